"""EventWriter's files, read back with TensorBoard's own reader."""

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from keras_logits._tensorboard_events import EventWriter


def read(log_dir):
    accumulator = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def test_scalars_and_histograms_read_back_equal_to_what_was_written(tmp_path):
    rng = np.random.default_rng(0)
    data = [rng.normal(size=(50, 3)), rng.normal(size=7)]
    writer = EventWriter(str(tmp_path), bins=10)
    for step in range(2):
        writer.write(step=step, scalars={"probe_logits_ece": 0.1 * step, "loss": 2.0 - step},
                     histograms={"probe_logits": data[step]})
    writer.close()
    events = read(tmp_path)
    assert [(e.step, e.value) for e in events.Scalars("probe_logits_ece")] == [(0, 0.0), (1, pytest.approx(0.1))]
    assert [e.value for e in events.Scalars("loss")] == [2.0, 1.0]
    for step, histogram in enumerate(h.histogram_value for h in events.Histograms("probe_logits")):
        values = data[step].ravel()
        assert histogram.num == values.size and sum(histogram.bucket) == values.size
        assert histogram.min == pytest.approx(values.min()) and histogram.max == pytest.approx(values.max())
        assert histogram.sum == pytest.approx(values.sum())
        assert histogram.sum_squares == pytest.approx((values**2).sum())


def test_nonfinite_values_are_left_out_of_histograms_and_constant_data_has_one_bin(tmp_path):
    writer = EventWriter(str(tmp_path))
    writer.write(step=0, scalars={}, histograms={"a": [1.0, np.nan, np.inf, 2.0], "b": [3.0, 3.0], "c": [np.nan]})
    writer.close()
    events = read(tmp_path)
    a = events.Histograms("a")[0].histogram_value
    assert a.num == 2 and a.min == 1.0 and a.max == 2.0
    b = events.Histograms("b")[0].histogram_value
    assert b.num == 2 and b.min == b.max == 3.0
    assert events.Histograms("c")[0].histogram_value.num == 0

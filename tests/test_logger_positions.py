"""LogitsLogger on per-position heads (segmentation, masked token tagging): files equal NumPy references."""

import csv

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

import keras_logits
from keras_logits._tensorboard_events import histogram_sample
from keras_logits.callbacks import LogitsLogger
from tests.test_metrics import numpy_ece, softmax

CLASSES, VOID = 3, 255


def in_step_metrics():
    return keras_logits.metrics.default_metrics("softmax", ignore_class=VOID)


def read_events(run_dir):
    accumulator = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def reference_summary(logits, labels, keep):
    """Flatten positions, drop those not kept, then the statistics in NumPy float64."""
    logits = logits.reshape(-1, logits.shape[-1]).astype("float64")[keep.reshape(-1)]
    labels = labels.reshape(-1)[keep.reshape(-1)]
    p = softmax(logits)
    top_two = np.sort(logits, axis=1)[:, -2:]
    correct = (p.argmax(1) == labels).astype("float64")
    return {"probe_logits_mean": logits.mean(), "probe_logits_margin": np.mean(top_two[:, 1] - top_two[:, 0]),
            "probe_logits_confidence": p.max(1).mean(), "probe_logits_ece": numpy_ece(p.max(1), correct),
            "probe_logits_brier": np.mean(((p - np.eye(logits.shape[1])[labels]) ** 2).sum(1)),
            "probe_logits_accuracy": correct.mean()}


def assert_last_epoch_everywhere(root, history, expected):
    """History, the CSV's last row and the TensorBoard run hold `expected` for the last epoch; returns the run."""
    events = read_events(root / "keras_logits")
    last_row = read_csv(root / "log.csv")[-1]
    for key, value in expected.items():
        assert history.history[key][-1] == pytest.approx(value, abs=1e-5), key
        assert float(last_row[key]) == pytest.approx(value, abs=1e-5), key
        assert events.Scalars(key)[-1].value == pytest.approx(value, abs=1e-5), key
    return events


def segmenter(activation="softmax"):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                             keras.layers.Conv2D(CLASSES, 1, activation=activation)])


def segmentation_data(count, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 8, 8, 2)).astype("float32")
    labels = (x[..., 0] > 0).astype("int64") + (x[..., 1] > 0.5)
    labels[:, 0, :] = VOID  # a "void" border row, as segmentation datasets mark unlabelled pixels
    return x, labels


@pytest.fixture(scope="module")
def segmentation_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmentation")
    (x, y), (x_probe, y_probe) = segmentation_data(64, 1), segmentation_data(6, 2)
    exposed = keras_logits.expose(segmenter())
    exposed.compile(optimizer=keras.optimizers.Adam(1e-2),
                    loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=VOID)},
                    metrics={"logits": in_step_metrics()})
    logger = LogitsLogger((x_probe, y_probe), log_dir=root, csv_path=root / "log.csv", ignore_class=VOID)
    history = exposed.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[logger])
    twin = segmenter(activation=None)
    twin.set_weights(exposed.get_weights())
    logits = twin.predict(x_probe, verbose=0)
    return root, history, logits, y_probe


def test_segmentation_probe_values_equal_the_numpy_reference_in_every_file(segmentation_run):
    root, history, logits, labels = segmentation_run
    expected = reference_summary(logits, labels, labels != VOID)
    events = assert_last_epoch_everywhere(root, history, expected)
    assert [e.step for e in events.Scalars("probe_logits_ece")] == [0, 1]
    assert np.isfinite(history.history["logits_ece"]).all() and "logits_ece" in events.Tags()["scalars"]
    with np.load(root / "keras_logits" / "snapshots" / "epoch_0001.npz") as snapshot:
        np.testing.assert_allclose(snapshot["logits"], logits, atol=1e-5)
        np.testing.assert_array_equal(snapshot["labels"], labels)
        assert "probabilities" not in snapshot
    histogram = events.Histograms("probe_logits")[-1].histogram_value
    counted = logits[labels != VOID]  # void pixels are left out of the histograms too
    assert histogram.num == counted.size and histogram.max == pytest.approx(counted.max(), abs=1e-5)
    assert histogram.sum == pytest.approx(counted.sum(), rel=1e-4)


def test_segmentation_snapshots_under_a_byte_budget_store_a_fixed_sample_in_float16(tmp_path):
    (x, y), (x_probe, y_probe) = segmentation_data(32, 1), segmentation_data(6, 2)
    # Trained through the logits: on torch, a sparse cross-entropy through a per-pixel softmax output
    # fails in backward ("grad_input must be contiguous", Keras 3.15).
    model = keras_logits.expose(segmenter())
    model.compile(optimizer="adam",
                  loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=VOID)})
    budget = 100 * CLASSES * 2  # 100 positions of float16 logits, of 6 * 64 = 384
    logger = LogitsLogger((x_probe, y_probe), csv_path=tmp_path / "log.csv", ignore_class=VOID,
                          snapshot_dtype="float16", compress_snapshots=True, max_snapshot_bytes=budget,
                          keep_last=1, keep_every=2, max_histogram_values=50)
    model.fit(x, y, epochs=4, verbose=0, callbacks=[logger])
    outputs = {"logits": np.zeros((6, 8, 8, CLASSES)), "probabilities": np.zeros((6, 8, 8, CLASSES))}
    sample = histogram_sample(outputs["logits"], outputs["probabilities"], max_values=logger.max_histogram_values)
    assert sample[0].shape == (50 // CLASSES, CLASSES)  # a bounded sample of positions
    directory = tmp_path / "log_snapshots"
    assert sorted(p.name for p in directory.iterdir()) == ["epoch_0000.npz", "epoch_0002.npz", "epoch_0003.npz"]
    twin = segmenter(activation=None)
    twin.set_weights(model.get_weights())
    logits = twin.predict(x_probe, verbose=0).reshape(-1, CLASSES)
    with np.load(directory / "epoch_0003.npz") as last, np.load(directory / "epoch_0000.npz") as first:
        assert last["logits"].dtype == np.float16 and last["logits"].shape == (100, CLASSES)
        np.testing.assert_array_equal(last["positions"], first["positions"])  # the same positions every epoch
        np.testing.assert_allclose(last["logits"], logits[last["positions"]], rtol=2e-3, atol=2e-3)
        np.testing.assert_array_equal(last["labels"], y_probe.reshape(-1)[last["positions"]])


@pytest.fixture(scope="module")
def tagging_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tagging")
    rng = np.random.default_rng(5)

    def sentences(count):
        tokens = rng.integers(1, 20, size=(count, 7))
        lengths = rng.integers(2, 8, size=count)
        tokens[np.arange(7)[None, :] >= lengths[:, None]] = 0  # padding
        return tokens, (tokens % CLASSES).astype("int64")

    (x, y), (x_probe, y_probe) = sentences(96), sentences(10)

    def tagger(activation="softmax"):
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((7,), dtype="int32"), keras.layers.Embedding(20, 8, mask_zero=True),
                                 keras.layers.Dense(CLASSES, activation=activation)])

    model = tagger()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=in_step_metrics())
    logger = LogitsLogger((x_probe, y_probe), log_dir=root, csv_path=root / "log.csv")
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[logger])
    twin = tagger(activation=None)
    twin.set_weights(model.get_weights())
    return root, history, twin.predict(x_probe, verbose=0), x_probe, y_probe


def test_masked_tagger_probe_leaves_padding_out_in_every_file(tagging_run):
    root, history, logits, tokens, labels = tagging_run
    expected = reference_summary(logits, labels, tokens != 0)
    with_padding = reference_summary(logits, labels, np.ones_like(tokens, dtype=bool))
    assert expected["probe_logits_mean"] != pytest.approx(with_padding["probe_logits_mean"], abs=1e-4)
    events = assert_last_epoch_everywhere(root, history, expected)
    with np.load(root / "keras_logits" / "snapshots" / "epoch_0001.npz") as snapshot:
        np.testing.assert_allclose(snapshot["logits"], logits, atol=1e-5)
        np.testing.assert_array_equal(snapshot["mask"], tokens != 0)


@pytest.mark.parametrize("labels,message", [
    (np.zeros((4, 8)), r"labels have shape \(4, 8\), but the logits .* are \(batch, 8, 8, 3\)"),
    (np.full((4, 8, 8), VOID), "pass ignore_class=255"),
])
def test_per_position_labels_that_do_not_fit_fail_at_train_begin(labels, message, tmp_path):
    x, y = segmentation_data(8, 0)
    model = segmenter()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=VOID))
    epochs = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs.append(epoch))
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LogitsLogger((x[:4], labels), log_dir=tmp_path), record])
    assert epochs == []

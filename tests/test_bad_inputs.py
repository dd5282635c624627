"""The rows of docs/bad_inputs.md that no other test file covers: one test per row.

Every row of the catalogue names its test; `test_every_catalogue_row_names_an_existing_test`
keeps the table and the tests in step.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits.calibration import TemperatureScaling, reliability_report
from keras_logits.callbacks import LogitsLogger
from keras_logits.statistics import summarize
from keras_logits import scores

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "docs" / "bad_inputs.md"


def softmax_model(inputs=4, classes=3):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(classes, activation="softmax")])


def test_every_catalogue_row_names_an_existing_test():
    rows = [line for line in CATALOGUE.read_text().splitlines() if line.startswith("| ") and "`tests/" in line]
    assert len(rows) >= 25
    for row in rows:
        path, name = re.search(r"`(tests/[\w/]+\.py)::(\w+)", row).groups()
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M), f"{path}::{name} is missing"


@pytest.mark.parametrize("value", ["model.keras", keras.layers.Dense(3), None, 42], ids=["str", "layer", "None", "int"])
def test_wrong_types_are_refused_by_name(value):
    for function in (keras_logits.expose, keras_logits.find_head, keras_logits.check_model):
        with pytest.raises(TypeError, match=f"Expected a keras.Model, got {type(value).__name__}"):
            function(value)


def test_nan_and_inf_inputs_give_nan_rows_and_are_counted():
    model = softmax_model()
    x = np.ones((4, 4), "float32")
    x[1, 0], x[2, 3] = np.nan, np.inf
    outputs = keras_logits.expose(model).predict(x, verbose=0)
    bad_rows = ~np.isfinite(outputs["logits"]).all(axis=1)
    assert bad_rows.tolist() == [False, True, True, False]  # only the rows that had NaN/inf
    np.testing.assert_allclose(outputs["probabilities"][~bad_rows], model.predict(x, verbose=0)[~bad_rows])
    metric = keras_logits.metrics.NonFiniteLogits()
    metric.update_state(None, outputs["logits"])
    assert float(metric.result()) == float(np.sum(~np.isfinite(outputs["logits"])))


def test_nonfinite_logits_are_refused_by_calibration_and_propagate_in_scores():
    logits = np.array([[1.0, 2.0], [np.nan, 0.0], [np.inf, 0.0]])
    with pytest.raises(ValueError, match="2 NaN/inf values"):
        reliability_report(logits, [0, 1, 0], from_logits=True)
    with pytest.raises(ValueError, match="NaN/inf"):
        TemperatureScaling().fit(logits, [0, 1, 0])
    energy = scores.energy(logits)
    assert np.isfinite(energy[0]) and np.isnan(energy[1])  # per-row: the finite row keeps its score
    assert summarize(logits, None, activation="softmax")["nonfinite"] == 2.0


def test_integer_and_one_hot_labels_give_the_same_numbers():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(300, 5)) * 3, rng.integers(0, 5, 300)
    one_hot = np.eye(5)[labels]
    assert reliability_report(logits, labels, from_logits=True).ece == pytest.approx(
        reliability_report(logits, one_hot, from_logits=True).ece)
    assert TemperatureScaling().fit(logits, labels).temperature_ == pytest.approx(
        TemperatureScaling().fit(logits, one_hot).temperature_, rel=1e-9)
    from_ids = summarize(logits, labels, activation="softmax")
    assert from_ids == pytest.approx(summarize(logits, one_hot, activation="softmax"))


def test_mismatched_label_shapes_are_refused(tmp_path):
    logits = np.zeros((6, 3))
    with pytest.raises(ValueError, match="labels have shape \\(5,\\) but there are 6 samples"):
        reliability_report(logits, np.zeros(5), from_logits=True)
    with pytest.raises(ValueError, match="labels have 4 columns but the logits have 3 classes"):
        TemperatureScaling().fit(logits, np.zeros((6, 4)))
    model = softmax_model()
    model.compile(loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="has 8 inputs but 7 labels"):
        model.fit(np.ones((8, 4)), np.zeros(8), verbose=0,
                  callbacks=[LogitsLogger((np.ones((8, 4)), np.zeros(7)), csv_path=tmp_path / "log.csv")])
    assert not (tmp_path / "log.csv").exists()


def test_zero_classes_are_refused():
    with pytest.raises(ValueError, match="zero classes"):
        scores.entropy(np.zeros((4, 0)))
    with pytest.raises(ValueError, match="zero classes"):
        reliability_report(np.zeros((4, 0)), np.zeros(4), from_logits=True)
    inputs = keras.Input((4,))
    try:
        model = keras.Model(inputs, keras.layers.Dense(0, activation="softmax")(inputs))
    except ValueError:
        return  # Keras itself refuses a Dense with no units on this version.
    with pytest.raises(ValueError, match="0 classes"):
        keras_logits.expose(model)


def test_a_hundred_thousand_classes():
    classes = 100_000
    model = softmax_model(inputs=8, classes=classes)
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    outputs = keras_logits.expose(model).predict(x, verbose=0)
    assert outputs["logits"].shape == (16, classes)
    np.testing.assert_allclose(outputs["probabilities"], model.predict(x, verbose=0), atol=1e-7)
    labels = np.arange(16) * 1000
    report = reliability_report(outputs["logits"], labels, from_logits=True)  # no (classes x classes) eye
    summary = summarize(outputs["logits"], labels, activation="softmax")
    assert summary["brier"] == pytest.approx(report.brier, rel=1e-9)
    assert TemperatureScaling().fit(outputs["logits"], labels).temperature_ > 0


def test_read_only_directory_is_refused_before_writing(tmp_path):
    if os.geteuid() == 0:  # root ignores permission bits; sysfs refuses new files even to root
        locked = Path("/sys/kernel")
        if not locked.is_dir():
            pytest.skip("no read-only directory that root cannot write to")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
    before = sorted(p.name for p in locked.iterdir())
    try:
        with pytest.raises(PermissionError):
            keras_logits.plots.reliability_diagram(np.eye(3), [0, 1, 2], from_logits=False, path=locked / "r.png")
        model = softmax_model()
        model.compile(loss="sparse_categorical_crossentropy")
        with pytest.raises(PermissionError, match="cannot write to"):
            model.fit(np.ones((4, 4)), np.zeros(4), verbose=0,
                      callbacks=[LogitsLogger(np.ones((4, 4)), log_dir=locked / "logs")])
        assert sorted(p.name for p in locked.iterdir()) == before
    finally:
        if locked.is_relative_to(tmp_path):
            locked.chmod(0o700)


FULL_DISK = r"""
import os, resource, signal, sys
import numpy as np
from keras_logits._files import atomic_write
from keras_logits.plots import reliability_diagram
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
target = sys.argv[1]
for write in (lambda: atomic_write(target, lambda f: f.write(b"x" * 100_000)),
              lambda: reliability_diagram(np.eye(3), [0, 1, 2], from_logits=False, path=target)):
    try:
        write()
    except OSError as error:
        print("refused:", error.strerror)
"""


def test_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "kept.png"
    target.write_bytes(b"old contents")
    completed = subprocess.run([sys.executable, "-c", FULL_DISK, str(target)], capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.count("refused: File too large") == 2
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.png"]


def test_paths_that_exist_as_files_are_refused(tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("not a directory")
    model = softmax_model()
    model.compile(loss="sparse_categorical_crossentropy")
    for logger in (LogitsLogger(np.ones((4, 4)), log_dir=a_file),
                   LogitsLogger(np.ones((4, 4)), csv_path=a_file / "log.csv")):
        with pytest.raises(PermissionError, match="cannot write to"):
            model.fit(np.ones((4, 4)), np.zeros(4), verbose=0, callbacks=[logger])
    if keras.backend.backend() != "torch":  # torch cannot export at all (its own row)
        with pytest.raises(FileExistsError, match="it is a file"):
            keras_logits.export(model, a_file)
    assert a_file.read_text() == "not a directory"

"""What the one walk in head.py gives the consumers: export manifests and LogitsLogger on LogitsHead models."""

import csv

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits.serving import _graph as serving
from keras_logits.layers import LogitsHead

X = np.random.default_rng(4).normal(size=(12, 6)).astype("float32")
Y = np.arange(12) % 3

needs_export = pytest.mark.skipif(
    keras.backend.backend() not in serving.EXPORT_BACKENDS["tf_saved_model"],
    reason=f"a SavedModel export needs one of {serving.EXPORT_BACKENDS['tf_saved_model']}")


def _logits_head_model():
    inputs = keras.Input((6,))
    return keras.Model(inputs, LogitsHead("softmax", name="both")(keras.layers.Dense(3, name="scores")(inputs)))


@needs_export
def test_export_of_an_exposed_model_writes_the_same_manifest_head_as_the_original(tmp_path):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax", name="cls")])
    keras_logits.export(model, tmp_path / "original", format="tf_saved_model", verify=False)
    exposed = keras_logits.expose(model, temperature=2.0)  # with a temperature baked in, likewise
    keras_logits.export(exposed, tmp_path / "exposed", format="tf_saved_model", verify=False)
    head = keras_logits.read_manifest(tmp_path / "exposed")["head"]
    assert (head["layer"], head["fused"], head["activation"], head["num_classes"], head["path"]) == (
        "cls", True, "softmax", 3, [])
    original = keras_logits.read_manifest(tmp_path / "original")["head"]
    assert {**original, "temperature": None} == {**head, "temperature": None}


@needs_export
def test_a_logits_head_model_exports_with_its_own_probabilities(tmp_path):
    model = _logits_head_model()
    keras_logits.export(model, tmp_path / "export", format="tf_saved_model")
    head = keras_logits.read_manifest(tmp_path / "export")["head"]
    assert (head["layer"], head["fused"], head["num_classes"]) == ("both", False, 3)


def test_a_logits_head_model_trains_with_logits_logger(tmp_path):
    model = _logits_head_model()
    model.compile(optimizer="sgd", loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    logger = keras_logits.LogitsLogger((X, Y), csv_path=tmp_path / "log.csv", snapshots=False, histograms=False)
    model.fit(X, {"logits": Y}, epochs=2, verbose=0, callbacks=[logger])
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 2, rows
    (column,) = [key for key in rows[-1] if key.startswith("probe") and key.endswith("accuracy")]
    logits = model.predict(X, verbose=0)["logits"].astype("float64")
    probabilities = np.exp(keras_logits.scores.log_softmax(logits))
    accuracy = float(np.mean(probabilities.argmax(-1) == Y))
    assert float(rows[-1][column]) == pytest.approx(accuracy, abs=1e-6)

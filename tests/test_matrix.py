"""Closure: every kind of model the package accepts or produces, through every consumer.

Each row (a model kind) goes through each column (a consumer). A cell is either right against an
independent reference (a twin of the model built without the head's activation, with the same
weights; NumPy math; the original model's own predict) or a documented refusal: an exception whose
message is one line and names the way forward. Never a wrong value, never a raw traceback.

New kinds of model get a row in `KINDS`; new consumers get a test function below.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Callable, Optional

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits import scores
from tests.conftest import BACKEND, logit_tolerance

NUM_CLASSES = 4
BATCH = 8
EXPORT_BACKENDS = ("tensorflow", "jax")


@dataclasses.dataclass
class Kind:
    """One row of the matrix.

    `build(linear)` returns the model; with `linear=True` the twin whose output is the logits of the
    same head (no activation), to receive the model's weights. `head` is the output to pick on
    multi-head models; `refused` maps consumer names to a text their refusal must contain.
    """

    build: Callable
    activation: str = "softmax"
    inputs: Callable = None
    head: Optional[str] = None
    per_position: bool = False
    temperature: float = 1.0
    refused: dict = dataclasses.field(default_factory=dict)


def _features(shape=(6,)):
    return lambda rng: rng.normal(size=(BATCH, *shape)).astype("float32")


def _dense_trunk(inputs):
    return keras.layers.Dense(8, activation="relu", name="trunk")(inputs)


def _fused(linear):
    inputs = keras.Input((6,), name="x")
    outputs = keras.layers.Dense(NUM_CLASSES, activation=None if linear else "softmax", name="classifier")(
        _dense_trunk(inputs))
    return keras.Model(inputs, outputs, name="fused")


def _separate(linear):
    inputs = keras.Input((6,), name="x")
    scores_ = keras.layers.Dense(NUM_CLASSES, name="scores")(_dense_trunk(inputs))
    return keras.Model(inputs, scores_ if linear else keras.layers.Activation("softmax", name="act")(scores_),
                       name="separate")


def _softmax_layer(linear):
    inputs = keras.Input((6,), name="x")
    scores_ = keras.layers.Dense(NUM_CLASSES, name="scores")(_dense_trunk(inputs))
    return keras.Model(inputs, scores_ if linear else keras.layers.Softmax(name="softmax")(scores_),
                       name="softmax_layer")


def _ops_softmax(linear):
    inputs = keras.Input((6,), name="x")
    scores_ = keras.layers.Dense(NUM_CLASSES, name="scores")(_dense_trunk(inputs))
    return keras.Model(inputs, scores_ if linear else keras.ops.softmax(scores_), name="ops_softmax")


def _binary(linear):
    inputs = keras.Input((6,), name="x")
    outputs = keras.layers.Dense(1, activation=None if linear else "sigmoid", name="classifier")(
        _dense_trunk(inputs))
    return keras.Model(inputs, outputs, name="binary")


def _multi_label(linear):
    inputs = keras.Input((6,), name="x")
    outputs = keras.layers.Dense(NUM_CLASSES, activation=None if linear else "sigmoid", name="tags")(
        _dense_trunk(inputs))
    return keras.Model(inputs, outputs, name="multi_label")


def _nested_backbone(linear):
    backbone = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu")], name="backbone")
    return keras.Sequential([keras.Input((6,), name="x"), backbone,
                             keras.layers.Dense(NUM_CLASSES, activation=None if linear else "softmax",
                                                name="classifier")], name="nested_backbone")


def _nested_head(linear):
    head = keras.Sequential([keras.Input((8,)), keras.layers.Dropout(0.1),
                             keras.layers.Dense(NUM_CLASSES, activation=None if linear else "softmax",
                                                name="classifier")], name="head_model")
    return keras.Sequential([keras.Input((6,), name="x"), keras.layers.Dense(8, activation="relu"), head],
                            name="nested_head")


def _multi_head(linear):
    inputs = keras.Input((6,), name="x")
    trunk = _dense_trunk(inputs)
    kind = keras.layers.Dense(NUM_CLASSES, activation=None if linear else "softmax", name="kind")(trunk)
    tags = keras.layers.Dense(3, activation="sigmoid", name="tags")(trunk)
    if linear:
        return keras.Model(inputs, kind, name="multi_head_twin")
    return keras.Model(inputs, {"kind": kind, "tags": tags}, name="multi_head")


def _multi_input(linear):
    left, right = keras.Input((6,), name="left"), keras.Input((3,), name="right")
    merged = keras.layers.Concatenate()([_dense_trunk(left), right])
    outputs = keras.layers.Dense(NUM_CLASSES, activation=None if linear else "softmax", name="classifier")(merged)
    return keras.Model([left, right], outputs, name="multi_input")


def _mixed_precision(linear):
    if linear:  # the reference twin computes in float32
        return _fused(linear)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        return _fused(linear)
    finally:
        keras.config.set_dtype_policy("float32")


def _with_logits_head(linear):
    inputs = keras.Input((6,), name="x")
    logits = keras.layers.Dense(NUM_CLASSES, name="scores")(_dense_trunk(inputs))
    if linear:
        return keras.Model(inputs, logits, name="logits_head_twin")
    return keras.Model(inputs, keras_logits.LogitsHead("softmax")(logits), name="with_logits_head")


def _exposed(linear):
    model = _fused(linear)
    return model if linear else keras_logits.expose(model)


def _saved_exposed(linear, root=None):
    model = _fused(linear)
    if linear:
        return model
    path = os.path.join(_SCRATCH["root"], "exposed_by_cli.keras")
    model.save(path.replace("exposed_by_cli", "original"))
    from keras_logits.cli import main

    assert main(["expose", path.replace("exposed_by_cli", "original"), path, "--overwrite"]) == 0
    return keras.saving.load_model(path, safe_mode=True)


def _temperature(linear):
    model = _fused(linear)
    return model if linear else keras_logits.expose(model, temperature=2.0)


def _segmentation(linear):
    inputs = keras.Input((6, 6, 2), name="image")
    hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(NUM_CLASSES, 1, activation=None if linear else "softmax", name="pixels")(hidden)
    return keras.Model(inputs, outputs, name="segmentation")


def _tokens(rng):
    ids = rng.integers(1, 20, size=(BATCH, 5))
    ids[::2, 3:] = 0  # padding at the end of every other sequence
    return ids.astype("int32")


def _tagger(linear):
    inputs = keras.Input((5,), dtype="int32", name="tokens")
    hidden = keras.layers.Embedding(20, 8, mask_zero=True)(inputs)
    hidden = keras.layers.Dense(8, activation="relu")(hidden)
    outputs = keras.layers.Dense(NUM_CLASSES, activation=None if linear else "softmax", name="tags")(hidden)
    return keras.Model(inputs, outputs, name="tagger")


def _time_distributed(linear):
    inputs = keras.Input((5, 6), name="steps")
    dense = keras.layers.Dense(NUM_CLASSES, activation=None if linear else "softmax", name="tags")
    return keras.Model(inputs, keras.layers.TimeDistributed(dense, name="per_step")(inputs), name="td_tagger")


_SCRATCH = {}

KINDS = {
    "fused_dense": Kind(_fused, inputs=_features()),
    "separate_activation": Kind(_separate, inputs=_features()),
    "softmax_layer": Kind(_softmax_layer, inputs=_features()),
    "ops_softmax": Kind(_ops_softmax, inputs=_features()),
    "sigmoid_binary": Kind(_binary, activation="sigmoid", inputs=_features()),
    "sigmoid_multi_label": Kind(_multi_label, activation="sigmoid", inputs=_features()),
    "nested_backbone": Kind(_nested_backbone, inputs=_features()),
    "head_in_nested_model": Kind(_nested_head, inputs=_features()),
    "multi_head": Kind(_multi_head, inputs=_features(), head="kind"),
    "multi_input": Kind(_multi_input, inputs=lambda rng: [_features()(rng), _features((3,))(rng)]),
    "mixed_precision": Kind(_mixed_precision, inputs=_features()),
    "built_with_logits_head": Kind(_with_logits_head, inputs=_features()),
    "exposed": Kind(_exposed, inputs=_features()),
    "exposed_by_cli_and_reloaded": Kind(_saved_exposed, inputs=_features()),
    "temperature_baked_in": Kind(_temperature, inputs=_features(), temperature=2.0),
    "segmentation": Kind(_segmentation, inputs=_features((6, 6, 2)), per_position=True),
    "masked_token_tagger": Kind(_tagger, inputs=_tokens, per_position=True),
    "time_distributed_tagger": Kind(_time_distributed, inputs=_features((5, 6)), per_position=True),
}


@dataclasses.dataclass
class Row:
    """A built kind: the model, its inputs and labels, and the independent references."""

    kind: Kind
    model: keras.Model
    x: object
    labels: np.ndarray
    logits: np.ndarray  # the no-activation twin's output, divided by the baked-in temperature
    probabilities: np.ndarray  # the original model's own predict (the activation of `logits` for exposed kinds)
    mask: Optional[np.ndarray]


def _activate(logits, activation):
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(-1, keepdims=True)
    return np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)


def _labels(rng, kind: Kind, logits):
    if kind.activation == "sigmoid":
        return rng.integers(0, 2, size=logits.shape).astype("float32")
    return rng.integers(0, NUM_CLASSES, size=logits.shape[:-1]).astype("int32")


@pytest.fixture(scope="module", params=sorted(KINDS))
def row(request, tmp_path_factory):
    name = request.param
    kind = KINDS[name]
    _SCRATCH["root"] = str(tmp_path_factory.mktemp(name))
    keras.utils.set_random_seed(0)
    model = kind.build(False)
    twin = kind.build(True)
    original_weights = [w for w in model.weights]
    twin.set_weights([keras.ops.convert_to_numpy(w) for w in original_weights][: len(twin.weights)])
    rng = np.random.default_rng(0)
    x = kind.inputs(rng)
    logits = np.asarray(twin.predict(x, verbose=0), dtype="float64") / kind.temperature
    mask = None
    if name == "masked_token_tagger":
        mask = np.asarray(x) != 0
    return Row(kind, model, x, _labels(rng, kind, logits), logits, _activate(logits, kind.activation), mask)


def _one_line_refusal(error: BaseException, expected: str):
    message = str(error)
    assert expected in message, message
    assert "Traceback" not in message


def _exposed(row: Row):
    return keras_logits.ensure_exposed(row.model, head=row.kind.head)[0]


# ---- consumers -----------------------------------------------------------------------------------


def test_find_head(row):
    heads = keras_logits.find_heads(row.model)
    head = keras_logits.find_head(row.model, output=row.kind.head or (
        "probabilities" if "probabilities" in heads else None))
    assert head.activation == row.kind.activation
    assert head.num_classes == row.logits.shape[-1]


def test_expose_and_predict(row):
    outputs = _exposed(row).predict(row.x, verbose=0)
    logits, probabilities = np.asarray(outputs["logits"]), np.asarray(outputs["probabilities"])
    tolerance = 1e-2 if "mixed" in row.model.name or row.model.dtype_policy.name.startswith("mixed") else 1e-5
    assert logits.dtype == np.float32 and probabilities.dtype == np.float32
    if row.mask is not None:  # only the kept positions are defined (masked softmax) / compared
        logits, reference, probabilities = logits[row.mask], row.logits[row.mask], probabilities[row.mask]
        expected = row.probabilities[row.mask]
    else:
        reference, expected = row.logits, row.probabilities
    np.testing.assert_allclose(logits, reference, atol=max(tolerance, logit_tolerance(reference)))
    np.testing.assert_allclose(probabilities, expected, atol=tolerance)
    np.testing.assert_allclose(probabilities, _activate(logits.astype("float64"), row.kind.activation),
                               atol=max(tolerance, 1e-5))


def _numpy_summary(row: Row):
    """Mean logit, mean confidence and accuracy over the kept positions, computed here in NumPy."""
    logits, labels = row.logits, row.labels
    keep = row.mask if row.mask is not None else np.ones(logits.shape[:-1], bool)
    p = _activate(logits, row.kind.activation)
    if row.kind.activation == "softmax":
        confidence = p.max(-1)[keep]
        correct = (p.argmax(-1) == labels)[keep]
    else:
        confidence = np.maximum(p, 1 - p)[keep]
        correct = ((p >= 0.5) == (labels >= 0.5))[keep]
    return {"mean": logits[keep].mean(), "confidence": confidence.mean(), "accuracy": correct.mean()}


def test_default_metrics_in_evaluate(row):
    exposed = _exposed(row)
    loss = (keras.losses.BinaryCrossentropy(from_logits=True) if row.kind.activation == "sigmoid"
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    exposed.compile(loss={"logits": loss}, metrics={"logits": keras_logits.metrics.default_metrics(
        row.kind.activation)})
    results = exposed.evaluate(row.x, row.labels, batch_size=BATCH, verbose=0, return_dict=True)
    reference = _numpy_summary(row)
    tolerance = 2e-2 if row.model.dtype_policy.name.startswith("mixed") else 1e-4
    assert results["logits_mean"] == pytest.approx(reference["mean"], abs=tolerance)
    assert results["logits_confidence"] == pytest.approx(reference["confidence"], abs=tolerance)


def test_logits_logger_fit_writes_files_that_read_back(row, tmp_path):
    exposed = _exposed(row)
    loss = "binary_crossentropy" if row.kind.activation == "sigmoid" else "sparse_categorical_crossentropy"
    exposed.compile(optimizer="sgd", loss={"probabilities": loss})
    logger = keras_logits.LogitsLogger((row.x, row.labels), log_dir=tmp_path / "tb", csv_path=tmp_path / "log.csv")
    exposed.fit(row.x, {"probabilities": row.labels}, epochs=2, batch_size=BATCH, verbose=0, callbacks=[logger])
    with open(tmp_path / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(float(r["epoch"])) for r in rows] == [0, 1]
    snapshots = sorted(p for p in (tmp_path / "tb").rglob("*.npz"))
    assert len(snapshots) == 2
    final = exposed.predict(row.x, verbose=0)["logits"]
    with np.load(snapshots[-1]) as snapshot:
        np.testing.assert_allclose(snapshot["logits"].astype("float32"), final, atol=2e-3, rtol=1e-3)


def test_calibration_and_scores_on_the_exposed_logits(row):
    logits = np.asarray(_exposed(row).predict(row.x, verbose=0)["logits"], dtype="float64")
    kept = row.mask if row.mask is not None else np.ones(logits.shape[:-1], bool)
    confidence = scores.max_probability(logits, row.kind.activation)
    assert confidence.shape == logits.shape[:-1]
    p = _activate(logits, row.kind.activation)
    expected = (p if row.kind.activation == "softmax" else np.maximum(p, 1 - p)).max(-1)
    np.testing.assert_allclose(confidence[kept], expected[kept], atol=1e-6)
    report = keras_logits.reliability_report(logits, row.labels, activation=row.kind.activation, from_logits=True,
                                             mask=row.mask)
    assert report.accuracy == pytest.approx(_numpy_summary(row)["accuracy"], abs=2e-2 if "mixed" in
                                            row.model.name else 1e-9)
    scaler = keras_logits.TemperatureScaling(row.kind.activation).fit(logits, row.labels, mask=row.mask)
    assert scaler.transform(logits).shape == logits.shape


@pytest.mark.backends(*EXPORT_BACKENDS)
def test_export_saved_model_verified(row, tmp_path):
    path = keras_logits.export(row.model, tmp_path / "export", head=row.kind.head)
    manifest = keras_logits.read_manifest(path)
    assert manifest["verification"] is not None
    assert manifest["head"]["activation"] == row.kind.activation


@pytest.mark.backends("torch")
def test_export_on_torch_is_a_clear_refusal(row, tmp_path):
    with pytest.raises(RuntimeError) as error:
        keras_logits.export(row.model, tmp_path / "export", head=row.kind.head)
    _one_line_refusal(error.value, "KERAS_BACKEND=tensorflow")


@pytest.mark.slow
@pytest.mark.backends("tensorflow")
def test_command_line_inspect_expose_export_predict(row, tmp_path, capsys):
    from keras_logits.cli import main

    model_path = tmp_path / "model.keras"
    row.model.save(model_path)
    head = ["--head", row.kind.head] if row.kind.head else []
    assert main(["inspect", str(model_path), *head]) == 0, capsys.readouterr().err
    assert main(["expose", str(model_path), str(tmp_path / "exposed.keras"), *head]) == 0, capsys.readouterr().err
    assert main(["export", str(model_path), str(tmp_path / "export"), "--no-verify", *head]) == 0, \
        capsys.readouterr().err
    x = row.x if not isinstance(row.x, list) else None
    if x is None:  # predict reads one input array
        assert main(["predict", str(model_path), str(tmp_path / "x.npy"), *head]) == 1
        return
    np.save(tmp_path / "x.npy", x)
    for target in (model_path, tmp_path / "exposed.keras", tmp_path / "export"):
        output = tmp_path / f"predictions_{target.stem}.npz"
        assert main(["predict", str(target), str(tmp_path / "x.npy"), "--output", str(output), *(
            head if target == model_path else [])]) == 0, capsys.readouterr().err
        with np.load(output) as predictions:
            kept = row.mask if row.mask is not None else np.ones(row.logits.shape[:-1], bool)
            np.testing.assert_allclose(predictions["logits"][kept], row.logits[kept],
                                       atol=max(1e-2, logit_tolerance(row.logits)))
            expected_ids = (row.probabilities.argmax(-1) if row.kind.activation == "softmax"
                            else (row.probabilities >= 0.5).astype("int64"))
            assert predictions["class_id"].shape == expected_ids.shape

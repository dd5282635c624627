"""Closure: every kind of model the package accepts or produces, through every consumer.

Rows (model kinds) are in tests/matrix_kinds.py; each test function here is a column (a consumer). A cell
is either right against an independent reference (a twin of the model built without the head's
activation, given the same weights; NumPy math; the model's own predict) or a documented refusal whose
message is one line and names a way forward that works. Never a wrong value, never a raw traceback.
New kinds of model get a row in `KINDS`; new consumers get a test function here.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
from typing import Optional

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits import scores
from keras_logits._graph import model_outputs
from tests.conftest import BACKEND, logit_tolerance
from tests.matrix_kinds import BATCH, KINDS, SCRATCH, Kind, numpy_activation

EXPORT_BACKENDS = ("tensorflow", "jax")

# Cells that show a bug in the package: (consumer, kind) -> (backends, reason). Strict xfails until fixed.
KNOWN_BUGS = {}

# Documented refusals: (consumer, kind) -> (backends, text the one-line error must contain).
_JAX2TF_REFUSAL = "KERAS_BACKEND=tensorflow"
REFUSALS = {
    # jax2tf cannot trace Resizing over free image sizes: the JAX export names the TensorFlow way.
    ("export", "keras_hub_image_classifier"): (("jax",), _JAX2TF_REFUSAL),
    ("cli", "keras_hub_image_classifier"): (("jax",), _JAX2TF_REFUSAL),
}


def refusal(consumer: str, name: str):
    """The text the documented refusal of this cell must contain on the running backend, or None."""
    backends, text = REFUSALS.get((consumer, name), ((), None))
    return text if BACKEND in backends else None


@dataclasses.dataclass
class Row:
    """A built kind: the model, its inputs and labels, and the independent references."""

    name: str
    kind: Kind
    model: keras.Model
    x: object
    labels: np.ndarray
    logits: np.ndarray  # the no-activation twin's predict, divided by a baked-in temperature
    probabilities: np.ndarray  # NumPy's activation of `logits`
    keep: np.ndarray  # the positions that count: all, or the Keras mask of a token tagger

    @property
    def mixed(self) -> bool:
        return self.model.dtype_policy.name.startswith("mixed")

    @property
    def tolerance(self) -> float:
        return 2e-2 if self.mixed else 1e-5


@pytest.fixture
def known_bug(request):
    """`known_bug(consumer, row)` marks the running cell as a strict xfail where KNOWN_BUGS lists it."""

    def mark(consumer: str, row: "Row"):
        backends, reason = KNOWN_BUGS.get((consumer, row.name), ((), None))
        if BACKEND in backends:
            request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))

    return mark


@pytest.fixture(scope="module", params=list(KINDS))
def row(request, tmp_path_factory):
    name = request.param
    kind = KINDS[name]
    if kind.needs and importlib.util.find_spec(kind.needs) is None:
        pytest.skip(f"the {name} row needs the optional {kind.needs} package")
    SCRATCH["root"] = str(tmp_path_factory.mktemp(name))
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    model = kind.build(False)
    twin = kind.build(True)
    twin.set_weights([keras.ops.convert_to_numpy(w) for w in model.weights][: len(twin.weights)])
    rng = np.random.default_rng(0)
    x = kind.inputs(rng)
    logits = np.asarray(twin.predict(x, verbose=0), dtype="float64") / kind.temperature
    if kind.activation == "sigmoid":
        labels = rng.integers(0, 2, size=logits.shape).astype("float32")
    else:
        labels = rng.integers(0, logits.shape[-1], size=logits.shape[:-1]).astype("int32")
    keep = np.asarray(x) != 0 if kind.masked else np.ones(logits.shape[:-1], bool)
    return Row(name, kind, model, x, labels, logits, numpy_activation(logits, kind.activation), keep)


def _exposed(row: Row) -> keras.Model:
    """The exposed model, the way the package's docs say to get it for this kind."""
    if row.kind.given_activation:
        return keras_logits.expose(row.model, activation=row.kind.given_activation)
    return keras_logits.ensure_exposed(row.model, head=row.kind.head)[0]


@pytest.fixture(scope="module")
def exposed_outputs(row):
    outputs = _exposed(row).predict(row.x, verbose=0)
    return {key: np.asarray(value) for key, value in outputs.items()}


def _assert_logits_and_probabilities(row: Row, logits, probabilities, tolerance: Optional[float] = None):
    tolerance = row.tolerance if tolerance is None else tolerance
    keep = row.keep
    np.testing.assert_allclose(logits[keep], row.logits[keep], rtol=0,
                               atol=max(tolerance, logit_tolerance(row.logits)))
    np.testing.assert_allclose(probabilities[keep], row.probabilities[keep], rtol=0, atol=tolerance)


def _one_line_refusal(message: str, *expected: str):
    assert "\n" not in message.strip() and "Traceback" not in message, message
    for text in expected:
        assert text in message, message


def _kept(row: Row, values):
    return np.asarray(values, dtype="float64")[row.keep]


# ---- consumers -----------------------------------------------------------------------------------


def test_find_head_names_the_activation_and_classes(known_bug, row):
    known_bug("find_head", row)
    output = row.kind.head or ("probabilities" if row.kind.exposed else None)
    head = keras_logits.find_head(row.model, output=output, activation=row.kind.given_activation)
    heads = keras_logits.find_heads(row.model, activation=row.kind.given_activation)
    assert head.activation == row.kind.activation
    assert head.num_classes == row.logits.shape[-1]
    assert head.output_name in heads
    if row.kind.head:  # several heads: without a name the refusal says how to pick one, and that works
        with pytest.raises(ValueError) as error:
            keras_logits.find_head(row.model)
        _one_line_refusal(str(error.value), "output=")
    if row.kind.given_activation:  # logits out: the refusal asks for the activation, which works (above)
        with pytest.raises(ValueError) as error:
            keras_logits.find_head(row.model)
        _one_line_refusal(str(error.value), f"activation='{row.kind.given_activation}'")


def test_expose_and_predict_match_the_no_activation_twin(known_bug, row, exposed_outputs):
    known_bug("expose", row)
    logits, probabilities = exposed_outputs["logits"], exposed_outputs["probabilities"]
    assert logits.dtype == np.float32 and probabilities.dtype == np.float32
    assert logits.shape == row.logits.shape
    _assert_logits_and_probabilities(row, logits, probabilities)
    own = row.model.predict(row.x, verbose=0)  # the model's own predict agrees with its exposed twin output
    own = own[row.kind.head or row.kind.own_output] if isinstance(own, dict) else own
    np.testing.assert_allclose(_kept(row, own), _kept(row, exposed_outputs[row.kind.own_output]), rtol=0,
                               atol=row.tolerance)


def _numpy_statistics(row: Row) -> dict:
    """Mean logit, confidence and accuracy over the kept positions, in NumPy float64."""
    p = row.probabilities
    if row.kind.activation == "softmax":
        confidence, correct = p.max(-1), p.argmax(-1) == row.labels
    else:
        confidence, correct = np.maximum(p, 1 - p).mean(-1), ((p >= 0.5) == (row.labels >= 0.5)).mean(-1)
    keep = row.keep
    return {"mean": row.logits[keep].mean(), "confidence": confidence[keep].mean(),
            "accuracy": correct[keep].mean()}


def _loss(activation):
    if activation == "sigmoid":
        return keras.losses.BinaryCrossentropy(from_logits=True)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_default_metrics_in_evaluate_equal_numpy(known_bug, row):
    known_bug("metrics", row)
    exposed = _exposed(row)
    exposed.compile(loss={"logits": _loss(row.kind.activation)},
                    metrics={"logits": keras_logits.metrics.default_metrics(row.kind.activation)})
    results = exposed.evaluate(row.x, row.labels, batch_size=BATCH, verbose=0, return_dict=True)
    reference = _numpy_statistics(row)
    tolerance = 2e-2 if row.mixed else 1e-4
    assert results["logits_mean"] == pytest.approx(reference["mean"], abs=tolerance * max(1, abs(reference["mean"])))
    assert results["logits_confidence"] == pytest.approx(reference["confidence"], abs=tolerance)


def test_logits_logger_fit_writes_csv_tensorboard_and_npz_that_read_back(known_bug, row, tmp_path):
    known_bug("logger", row)
    from tensorboard.backend.event_processing import event_accumulator

    exposed = _exposed(row)
    exposed.compile(optimizer=keras.optimizers.SGD(0.01), loss={"logits": _loss(row.kind.activation)})
    logger = keras_logits.LogitsLogger((row.x, row.labels), log_dir=tmp_path / "tb", csv_path=tmp_path / "log.csv")
    initial = row.model.get_weights()  # training moves the shared weights; the other cells compare with the twin
    try:
        history = exposed.fit(row.x, row.labels, epochs=2, batch_size=BATCH, verbose=0, callbacks=[logger])
        final = np.asarray(exposed.predict(row.x, verbose=0)["logits"], dtype="float64")
    finally:
        row.model.set_weights(initial)
    expected_mean = final[row.keep].mean()  # the probe's mean logit after the last epoch, over kept positions
    tolerance = 2e-2 if row.mixed else 1e-4
    with open(tmp_path / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(float(r["epoch"])) for r in rows] == [0, 1]
    assert float(rows[-1]["probe_logits_mean"]) == pytest.approx(expected_mean, abs=tolerance)
    assert history.history["probe_logits_mean"][-1] == pytest.approx(expected_mean, abs=tolerance)
    events = event_accumulator.EventAccumulator(str(tmp_path / "tb" / "keras_logits"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("probe_logits_mean")] == [0, 1]
    assert events.Scalars("probe_logits_mean")[-1].value == pytest.approx(expected_mean, abs=tolerance)
    snapshots = sorted((tmp_path / "tb").rglob("epoch_*.npz"))
    assert [p.name for p in snapshots] == ["epoch_0000.npz", "epoch_0001.npz"]
    with np.load(snapshots[-1]) as snapshot:
        stored = snapshot["logits"].astype("float64")
    np.testing.assert_allclose(stored[row.keep], final[row.keep], rtol=1e-3, atol=1e-3 if not row.mixed else 2e-2)


def test_logits_logger_on_the_model_itself_exposes_it_and_logs_the_probe(known_bug, row):
    """The README's way: compile and fit the model as it is; the logger exposes it (head= on multi-head models)."""
    known_bug("logger_on_model", row)
    if BACKEND == "torch" and row.name == "segmentation":  # upstream: fails the same without keras_logits
        pytest.skip("Keras on torch (CPU): fit of a Conv2D softmax output with sparse_categorical_crossentropy "
                    "raises 'grad_input must be contiguous' in backward, with or without keras_logits")
    outputs = set(model_outputs(row.model))
    if row.kind.given_activation:  # the model outputs logits: its loss takes them so
        loss, targets = _loss(row.kind.activation), row.labels
    elif {"logits", "probabilities"} <= outputs:  # exposed, or built with LogitsHead: the loss on the logits
        # Plain y, as the README does: a y dict keyed only by "logits" raises KeyError in Keras (DESIGN pitfalls).
        loss, targets = {"logits": _loss(row.kind.activation)}, row.labels
    elif row.kind.head:  # multi-head: a loss for the head the logger logs
        loss, targets = {row.kind.head: _probability_loss(row.kind.activation)}, {row.kind.head: row.labels}
    else:
        loss, targets = _probability_loss(row.kind.activation), row.labels
    row.model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss)
    logger = keras_logits.LogitsLogger((row.x, row.labels), head=row.kind.head, activation=row.kind.given_activation,
                                       snapshots=False, histograms=False)
    initial = row.model.get_weights()
    try:
        history = row.model.fit(row.x, targets, epochs=1, batch_size=BATCH, verbose=0, callbacks=[logger])
        final = np.asarray(_exposed(row).predict(row.x, verbose=0)["logits"], dtype="float64")
    finally:
        row.model.set_weights(initial)
    assert history.history["probe_logits_mean"][-1] == pytest.approx(final[row.keep].mean(),
                                                                     abs=2e-2 if row.mixed else 1e-4)


def _probability_loss(activation):
    return "binary_crossentropy" if activation == "sigmoid" else "sparse_categorical_crossentropy"


def test_calibration_and_scores_on_the_exposed_logits_equal_numpy(known_bug, row, exposed_outputs):
    known_bug("calibration", row)
    activation = row.kind.activation
    logits = exposed_outputs["logits"].astype("float64")
    mask = row.keep if row.kind.masked else None
    tolerance = 2e-2 if row.mixed else 1e-5
    p = numpy_activation(logits, activation)
    expected = p.max(-1) if activation == "softmax" else np.maximum(p, 1 - p).max(-1)
    np.testing.assert_allclose(scores.max_probability(logits, activation)[row.keep], expected[row.keep], atol=1e-9)
    assert sorted(scores.ood_scores(logits, activation)) == ["energy", "entropy", "margin", "max_logit",
                                                             "max_probability"]
    report = keras_logits.reliability_report(logits, row.labels, activation=activation, from_logits=True, mask=mask)
    assert report.accuracy == pytest.approx(_numpy_statistics(row)["accuracy"], abs=tolerance)
    scaler = keras_logits.TemperatureScaling(activation).fit(logits, row.labels, mask=mask)
    assert scaler.transform(logits).shape == logits.shape
    # The fitted temperature is the NLL's minimum: no worse than T = 1, in NumPy.
    fitted = float(np.asarray(scaler.temperature_).ravel()[0])
    assert _numpy_nll(row, logits / fitted) <= _numpy_nll(row, logits) + 1e-9


def _numpy_nll(row: Row, logits):
    keep = row.keep
    if row.kind.activation == "sigmoid":
        p = np.clip(numpy_activation(logits, "sigmoid"), 1e-12, 1 - 1e-12)
        return -(row.labels * np.log(p) + (1 - row.labels) * np.log(1 - p))[keep].mean()
    log_p = logits - logits.max(-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
    return -np.take_along_axis(log_p, row.labels[..., None].astype(int), -1)[..., 0][keep].mean()


def _by_input_name(names, x) -> dict:
    """The row's inputs keyed by an export's input names (the multi-input kind's are 'left' and 'right')."""
    if not isinstance(x, list):
        (name,) = names
        return {name: x}
    given = dict(zip(["left", "right"], x))
    return {name: given[next(key for key in given if name.startswith(key))] for name in names}


def _serving_inputs(serve, x):
    import tensorflow as tf

    specs = serve.structured_input_signature[1]
    return {name: tf.constant(value, dtype=specs[name].dtype) for name, value in _by_input_name(specs, x).items()}


@pytest.fixture(scope="module")
def saved_model(row, tmp_path_factory):
    """One verified SavedModel export per kind, shared by the export tests; on torch, the refusal."""
    path = tmp_path_factory.mktemp(f"{row.name}_export") / "export"
    # export() takes no activation=: a logits-only model goes through expose first (its documented way).
    model = _exposed(row) if row.kind.given_activation else row.model
    try:
        return keras_logits.export(model, path, head=row.kind.head, verify="in_process")
    except Exception as error:  # asserted by the cells
        return error


@pytest.mark.backends(*EXPORT_BACKENDS)
def test_export_saved_model_serves_the_twin_logits(known_bug, row, saved_model):
    known_bug("export", row)
    expected_refusal = refusal("export", row.name)
    if expected_refusal:
        assert isinstance(saved_model, RuntimeError), saved_model
        _one_line_refusal(str(saved_model), expected_refusal)
        return
    if isinstance(saved_model, Exception):
        raise saved_model
    import tensorflow as tf

    manifest = keras_logits.read_manifest(saved_model)
    assert manifest["verification"] is not None
    assert manifest["head"]["activation"] == row.kind.activation
    assert manifest["head"]["num_classes"] == row.logits.shape[-1]
    assert manifest["head"]["temperature"] == (row.kind.temperature if row.kind.temperature != 1.0 else None)
    serve = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    outputs = serve(**_serving_inputs(serve, row.x))
    _assert_logits_and_probabilities(row, outputs["logits"].numpy().astype("float64"),
                                     outputs["probabilities"].numpy().astype("float64"))


@pytest.mark.backends("torch")
def test_export_on_torch_is_a_one_line_refusal_naming_the_backend(row, saved_model):
    assert isinstance(saved_model, RuntimeError), saved_model
    _one_line_refusal(str(saved_model), "KERAS_BACKEND=tensorflow", "keras-logits export")


@pytest.mark.backends("tensorflow")
def test_export_onnx_serves_the_twin_logits(known_bug, row, tmp_path):
    known_bug("onnx", row)
    import onnxruntime

    model = _exposed(row) if row.kind.given_activation else row.model
    path = keras_logits.export(model, tmp_path / "onnx", format="onnx", head=row.kind.head, verify="in_process")
    session = onnxruntime.InferenceSession(str(path / "model.onnx"))
    feed = _by_input_name([given.name for given in session.get_inputs()], row.x)
    names = [output.name for output in session.get_outputs()]
    values = dict(zip(names, session.run(None, feed)))
    _assert_logits_and_probabilities(row, values["logits"].astype("float64"),
                                     values["probabilities"].astype("float64"))


def _cli(capsys, *arguments) -> tuple:
    from keras_logits.cli import main

    code = main([str(a) for a in arguments])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("keras-logits: error:")]
    assert len(errors) == (code != 0), captured.err  # a failure is one error line (progress lines aside)
    return code, captured.out, errors[0] if errors else captured.err


def test_command_line_inspect_expose_export_predict(known_bug, row, tmp_path, capsys):
    known_bug("cli", row)
    model_path = tmp_path / "model.keras"
    row.model.save(model_path)
    options = [*(["--head", row.kind.head] if row.kind.head else []),
               *(["--activation", row.kind.given_activation] if row.kind.given_activation else [])]
    code, out, err = _cli(capsys, "inspect", model_path, *options)
    assert code == 0, err
    assert row.kind.activation in out
    code, _, err = _cli(capsys, "expose", model_path, tmp_path / "exposed.keras", *options)
    assert code == 0, err
    exposed_file = keras.saving.load_model(tmp_path / "exposed.keras", safe_mode=True)
    outputs = exposed_file.predict(row.x, verbose=0)
    _assert_logits_and_probabilities(row, np.asarray(outputs["logits"], "float64"),
                                     np.asarray(outputs["probabilities"], "float64"))

    code, _, err = _cli(capsys, "export", model_path, tmp_path / "export", "--verify", "in_process", *options)
    targets = [(model_path, options), (tmp_path / "exposed.keras", [])]
    if refusal("cli", row.name):
        assert code == 1
        _one_line_refusal(err.strip(), refusal("cli", row.name))
    elif BACKEND in EXPORT_BACKENDS:
        assert code == 0, err
        targets.append((tmp_path / "export", []))
    else:
        assert code == 1
        _one_line_refusal(err.strip(), "KERAS_BACKEND=tensorflow")

    if isinstance(row.x, list):  # predict reads one input array: a one-line refusal naming the Python way
        np.save(tmp_path / "x.npy", row.x[0])
        code, _, err = _cli(capsys, "predict", model_path, tmp_path / "x.npy")
        assert code == 1
        _one_line_refusal(err.strip(), "takes 2 inputs", "keras_logits.expose")
        return
    np.save(tmp_path / "x.npy", row.x)
    for target, target_options in targets:
        output = tmp_path / f"predictions_{target.stem}.npz"
        code, _, err = _cli(capsys, "predict", target, tmp_path / "x.npy", "--output", output, *target_options)
        assert code == 0, f"{target.name}: {err}"
        with np.load(output) as predictions:
            _assert_logits_and_probabilities(row, predictions["logits"].astype("float64"),
                                             predictions["probabilities"].astype("float64"))
            ids = predictions["class_id"]
        expected = (row.probabilities.argmax(-1) if row.kind.activation == "softmax"
                    else (row.probabilities >= 0.5).astype("int64"))
        assert ids.shape == expected.shape
        keep = row.keep[..., None] if ids.ndim > row.keep.ndim else row.keep  # sigmoid ids: one per label
        decided = keep & (np.abs(row.probabilities - 0.5) > 1e-3) if row.kind.activation == "sigmoid" else keep
        np.testing.assert_array_equal(ids[decided], expected[decided])

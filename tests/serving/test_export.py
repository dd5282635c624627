"""export(): SavedModel and ONNX with both outputs, verified, atomic, with clear errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

import keras_logits
from tests.conftest import logit_tolerance

# SavedModel export runs on TensorFlow and JAX; tests of other backends' errors override this.
pytestmark = pytest.mark.backends("tensorflow", "jax")

# An independent consumer: plain TensorFlow in a fresh process that never imports keras_logits.
CONSUMER = r"""
import json, sys
import numpy as np, tensorflow as tf
export_dir, inputs_path, result_path = sys.argv[1:]
serve = tf.saved_model.load(export_dir).signatures["serving_default"]
arrays = dict(np.load(inputs_path))
outputs = serve(**{name: tf.constant(value) for name, value in arrays.items()})
np.savez(result_path, **{name: tensor.numpy() for name, tensor in outputs.items()})
spec = {name: [str(t.dtype.name), t.shape.as_list()] for name, t in serve.structured_outputs.items()}
print(json.dumps({"modules": sorted(m for m in sys.modules if m.split(".")[0] == "keras_logits"),
                  "outputs": spec}))
"""


def load_in_fresh_process(export_dir, inputs: dict, tmp_path):
    """Plain TensorFlow in a fresh process: the tests whose point is a consumer without keras_logits."""
    inputs_path, result_path = tmp_path / "inputs.npz", tmp_path / "result.npz"
    np.savez(inputs_path, **inputs)
    completed = subprocess.run([sys.executable, "-c", CONSUMER, str(export_dir), str(inputs_path), str(result_path)],
                               capture_output=True, text=True, check=True, cwd=tmp_path,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    with np.load(result_path) as result:
        return {name: result[name] for name in result.files}, report


def load_in_this_process(export_dir, inputs: dict):
    """Plain `tf.saved_model.load` in the test process: the serving signature's outputs and their specs.

    The other tests' consumer: it is TensorFlow's loader, not the package's, and it spares a Python and
    TensorFlow start-up per test; what a fresh process adds is checked by the tests that use one.
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(str(export_dir))  # kept referenced while serving: it owns the variables
    serve = loaded.signatures["serving_default"]
    outputs = serve(**{name: tf.constant(value) for name, value in inputs.items()})
    spec = {name: [t.dtype.name, t.shape.as_list()] for name, t in serve.structured_outputs.items()}
    return {name: tensor.numpy() for name, tensor in outputs.items()}, {"outputs": spec}


# The one SavedModel export per backend verified in a fresh process (the default); the other exports here
# verify in this process or not at all, as their point is elsewhere.
@pytest.fixture(scope="module")
def digits_export(trained_digits_cnn, tmp_path_factory):
    path = tmp_path_factory.mktemp("exports") / "digits"
    keras_logits.export(trained_digits_cnn, path, class_names=[f"digit {i}" for i in range(10)])
    return path


def _digits_inputs(digits, batch_size):
    (_, _), (x_test, _) = digits
    return np.resize(x_test, (batch_size, 8, 8, 1)).astype("float32")


@pytest.mark.parametrize("batch_size", [1, 257])
def test_saved_model_serves_all_outputs_in_a_fresh_process_without_keras_logits(
        digits_export, trained_digits_cnn, digits, batch_size, tmp_path):
    images = _digits_inputs(digits, batch_size)
    outputs, report = load_in_fresh_process(digits_export, {"image": images}, tmp_path)
    assert report["modules"] == []  # keras_logits is not needed to serve.
    assert report["outputs"] == {"logits": ["float32", [None, 10]], "probabilities": ["float32", [None, 10]],
                                 "class_id": ["int64", [None]]}
    expected = keras_logits.expose(trained_digits_cnn).predict(images, verbose=0)
    np.testing.assert_allclose(outputs["logits"], expected["logits"], atol=logit_tolerance(expected["logits"]))
    np.testing.assert_allclose(outputs["probabilities"], trained_digits_cnn.predict(images, verbose=0), atol=1e-6)
    np.testing.assert_array_equal(outputs["class_id"], expected["probabilities"].argmax(-1))
    assert outputs["class_id"].dtype == np.int64 and outputs["logits"].shape == (batch_size, 10)


def test_manifest_records_head_class_names_signature_and_versions(digits_export):
    manifest = keras_logits.read_manifest(digits_export)
    assert manifest["head"]["activation"] == "softmax" and manifest["head"]["num_classes"] == 10
    assert manifest["head"]["class_names"][3] == "digit 3"
    assert manifest["inputs"] == [{"name": "image", "shape": [None, 8, 8, 1], "dtype": "float32"}]
    assert {o["name"]: o["dtype"] for o in manifest["outputs"]} == {
        "class_id": "int64", "logits": "float32", "probabilities": "float32"}
    assert manifest["versions"]["keras"] == keras.__version__
    assert manifest["verification"]["consumer"] == "tf.saved_model.load"
    assert max(manifest["verification"]["max_abs_difference"].values()) <= 1e-5


def test_saved_model_cli_lists_the_three_outputs(digits_export):
    cli = Path(sys.executable).parent / "saved_model_cli"
    completed = subprocess.run([str(cli), "show", "--dir", str(digits_export), "--all"], capture_output=True,
                               text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    serving = completed.stdout.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    for name, dtype in [("logits", "DT_FLOAT"), ("probabilities", "DT_FLOAT"), ("class_id", "DT_INT64")]:
        assert f"outputs['{name}'] tensor_info:\n        dtype: {dtype}" in serving


@pytest.fixture(scope="module")
def onnx_export(trained_digits_cnn, tmp_path_factory):
    """The one ONNX export verified in a fresh process (the default); ONNX is written on TensorFlow only."""
    return keras_logits.export(trained_digits_cnn, tmp_path_factory.mktemp("onnx") / "onnx", format="onnx",
                               features=True)


@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize("batch_size", [1, 257])
def test_onnx_export_runs_in_onnxruntime_with_the_same_values(onnx_export, trained_digits_cnn, digits, batch_size):
    import onnxruntime

    path = onnx_export
    session = onnxruntime.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    images = _digits_inputs(digits, batch_size)
    names = [output.name for output in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {session.get_inputs()[0].name: images})))
    assert sorted(outputs) == ["class_id", "features", "logits", "probabilities"]
    expected = keras_logits.expose(trained_digits_cnn, features=True).predict(images, verbose=0)
    for name in ("logits", "features"):
        np.testing.assert_allclose(outputs[name], expected[name], atol=logit_tolerance(expected[name]))
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], atol=1e-5)
    np.testing.assert_array_equal(outputs["class_id"], expected["probabilities"].argmax(-1))
    assert keras_logits.read_manifest(path)["verification"]["consumer"] == "onnxruntime"
    assert keras_logits.read_manifest(path)["verification"]["process"] == "fresh"


def test_multi_label_sigmoid_export_gives_a_zero_one_class_vector(tmp_path):
    model = keras.Sequential([keras.Input((6,), name="x"), layers.Dense(8, activation="relu"),
                              layers.Dense(4, activation="sigmoid")])
    path = keras_logits.export(model, tmp_path / "tags", verify="in_process")
    x = np.random.default_rng(0).normal(size=(9, 6)).astype("float32") * 3
    outputs, _ = load_in_this_process(path, {"x": x})
    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], probabilities, atol=1e-6)
    np.testing.assert_array_equal(outputs["class_id"], (probabilities >= 0.5).astype("int64"))
    assert outputs["class_id"].shape == (9, 4)
    assert keras_logits.read_manifest(path)["head"]["class_id"] == "probabilities >= 0.5"


def test_mixed_precision_export_serves_float32(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    model = keras.Sequential([keras.Input((6,), name="x"), layers.Dense(8, activation="relu"),
                              layers.Dense(3, activation="softmax")])
    exposed = keras_logits.expose(model)
    keras.config.set_dtype_policy("float32")
    path = keras_logits.export(exposed, tmp_path / "mixed", verify="in_process")
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    outputs, report = load_in_this_process(path, {"x": x})
    assert report["outputs"]["logits"][0] == "float32" and report["outputs"]["probabilities"][0] == "float32"
    expected = exposed.predict(x, verbose=0)
    np.testing.assert_allclose(outputs["logits"], expected["logits"], atol=1e-5)


def test_existing_export_is_refused_without_overwrite_and_replaced_with_it(trained_digits_cnn, tmp_path):
    path = keras_logits.export(trained_digits_cnn, tmp_path / "model", class_names=list("abcdefghij"), verify=False)
    with pytest.raises(FileExistsError, match="already exists. Pass overwrite=True"):
        keras_logits.export(trained_digits_cnn, path, verify=False)
    keras_logits.export(trained_digits_cnn, path, overwrite=True, class_names=list("ABCDEFGHIJ"), verify=False)
    assert keras_logits.read_manifest(path)["head"]["class_names"][0] == "A"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


class _Noise(layers.Layer):
    """Adds fresh noise on every call: an export that cannot match the in-memory model."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed = keras.random.SeedGenerator(1)

    def call(self, x):
        return x + keras.random.uniform(keras.ops.shape(x), seed=self.seed)


def _snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_failed_verification_leaves_the_previous_export_intact(trained_digits_cnn, tmp_path):
    path = keras_logits.export(trained_digits_cnn, tmp_path / "model", verify=False)
    before = _snapshot(path)
    noisy = keras.Sequential([keras.Input((8, 8, 1), name="image"), layers.Flatten(), _Noise(),
                              layers.Dense(10, activation="softmax")])
    with pytest.raises(RuntimeError, match="differs from the in-memory model.*not installed"):
        keras_logits.export(noisy, path, overwrite=True, verify="in_process")
    assert _snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # No half-written sibling.


def test_exception_midway_leaves_the_previous_export_intact(trained_digits_cnn, tmp_path):
    path = keras_logits.export(trained_digits_cnn, tmp_path / "model", verify=False)
    before = _snapshot(path)
    wrong = {"image": np.zeros((2, 3, 3, 1), "float32")}  # The exported signature refuses this shape.
    with pytest.raises(Exception):
        keras_logits.export(trained_digits_cnn, path, overwrite=True, sample=wrong, verify="in_process")
    assert _snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


KILLED_EXPORT = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, keras_logits
from keras_logits.cli.demo import build_digits_cnn
keras_logits.export(build_digits_cnn(), sys.argv[1], overwrite=True)
"""


@pytest.mark.slow
def test_killed_export_keeps_the_previous_one_and_the_next_export_cleans_up(trained_digits_cnn, tmp_path):
    import signal
    import time

    path = keras_logits.export(trained_digits_cnn, tmp_path / "model", verify=False)
    before = _snapshot(path)
    process = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(path)])
    deadline = time.time() + 300
    while not any(p.name.startswith(f".model.{process.pid}-") for p in tmp_path.iterdir()):
        assert process.poll() is None and time.time() < deadline, "the export never started writing"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _snapshot(path) == before
    keras_logits.export(trained_digits_cnn, path, overwrite=True, verify=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_moved_aside_export_of_a_dead_process_is_restored(trained_digits_cnn, tmp_path):
    path = keras_logits.export(trained_digits_cnn, tmp_path / "model", verify=False)
    before = _snapshot(path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    os.rename(path, tmp_path / f".model.{int(dead.stdout)}-0000abcd.old")  # As if killed between renames.
    with pytest.raises(FileExistsError):
        keras_logits.export(trained_digits_cnn, path, verify=False)
    assert _snapshot(path) == before


# ---- errors ---------------------------------------------------------------------------------


def test_export_to_a_file_path_is_refused(trained_digits_cnn, tmp_path):
    file = tmp_path / "model.txt"
    file.write_text("keep me")
    with pytest.raises(FileExistsError, match="it is a file"):
        keras_logits.export(trained_digits_cnn, file, overwrite=True)
    assert file.read_text() == "keep me"


def test_export_under_an_unwritable_location_is_refused(trained_digits_cnn, tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="cannot create"):
        keras_logits.export(trained_digits_cnn, blocker / "sub" / "model")
    with pytest.raises(PermissionError, match="Cannot export to '/proc/"):
        keras_logits.export(trained_digits_cnn, "/proc/keras-logits-export")


def test_export_of_a_model_without_head_says_so(tmp_path):
    model = keras.Sequential([keras.Input((6,)), layers.Dense(3, name="raw")])
    with pytest.raises(ValueError, match="Cannot find a classification head in model .* 'raw' \\(Dense\\), which has no activation"):
        keras_logits.export(model, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.backends("tensorflow")
def test_missing_onnx_dependency_names_the_extra(trained_digits_cnn, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # Python's way to make a package unimportable.
    with pytest.raises(ImportError, match=r"needs tf2onnx.*pip install 'keras-logits\[onnx\]'"):
        keras_logits.export(trained_digits_cnn, tmp_path / "x", format="onnx")


def test_unknown_format_and_wrong_class_names_are_refused(trained_digits_cnn, tmp_path):
    with pytest.raises(ValueError, match="format='tflite' is not supported"):
        keras_logits.export(trained_digits_cnn, tmp_path / "x", format="tflite")
    with pytest.raises(ValueError, match="class_names has 3 names, but the head has 10 classes"):
        keras_logits.export(trained_digits_cnn, tmp_path / "x", class_names=["a", "b", "c"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.backends("jax", "torch")
def test_backends_that_cannot_write_a_format_say_which_can(tmp_path):
    model = keras.Sequential([keras.Input((6,)), layers.Dense(3, activation="softmax")])
    formats = ["onnx"] if keras.backend.backend() == "jax" else ["onnx", "tf_saved_model"]
    for format in formats:
        with pytest.raises(RuntimeError, match=f"needs the tensorflow.* backend; the active Keras backend is "
                                               f"'{keras.backend.backend()}'. Run with KERAS_BACKEND=tensorflow"):
            keras_logits.export(model, tmp_path / format, format=format)
    assert list(tmp_path.iterdir()) == []


# ---- seams: head=, exposed models, input specs, drop-in serving, verification modes ---------


@pytest.fixture(scope="module")
def two_heads():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    hidden = layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, {"kind": layers.Dense(3, activation="softmax", name="kind")(hidden),
                                "tags": layers.Dense(5, activation="sigmoid", name="tags")(hidden)})


@pytest.mark.parametrize("head", ["kind", "tags"])
def test_each_head_of_a_two_head_model_exports_with_head(two_heads, head, tmp_path):
    path = keras_logits.export(two_heads, tmp_path / head, head=head, verify="in_process")
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    outputs, _ = load_in_this_process(path, {"x": x})
    np.testing.assert_allclose(outputs["probabilities"], two_heads.predict(x, verbose=0)[head], atol=1e-6)
    assert keras_logits.read_manifest(path)["head"]["layer"] == head


def test_a_two_head_model_without_head_is_refused_naming_the_outputs(two_heads, tmp_path):
    with pytest.raises(ValueError, match=r"2 classification outputs \['kind', 'tags'\]"):
        keras_logits.export(two_heads, tmp_path / "both")
    assert list(tmp_path.iterdir()) == []


def test_reloaded_serve_of_a_single_input_export_takes_a_tensor_like_keras_export(trained_digits_cnn, digits,
                                                                                   tmp_path):
    import tensorflow as tf

    path = keras_logits.export(trained_digits_cnn, tmp_path / "model", verify=False)
    images = _digits_inputs(digits, 3)
    loaded = tf.saved_model.load(str(path))
    outputs = loaded.serve(tf.constant(images))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), trained_digits_cnn.predict(images, verbose=0),
                               atol=1e-6)


FIVE_EXPORTS = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, keras_logits
for i in range(6):
    model = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(3, activation="softmax")])
    keras_logits.export(model, os.path.join(sys.argv[1], str(i)), verify="in_process" if i % 2 else False)
print("exported")
"""


def test_six_exports_in_one_process_print_no_retracing_warning(tmp_path):
    completed = subprocess.run([sys.executable, "-c", FIVE_EXPORTS, str(tmp_path)], capture_output=True, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "exported" in completed.stdout and "retracing" not in completed.stderr


def test_in_process_verification_records_its_mode_and_time_and_still_catches_a_wrong_export(tmp_path):
    model = keras.Sequential([keras.Input((6,), name="x"), layers.Dense(3, activation="softmax")])
    path = keras_logits.export(model, tmp_path / "fast", verify="in_process")
    verification = keras_logits.read_manifest(path)["verification"]
    assert verification["process"] == "this" and 0 < verification["seconds"] < 60
    noisy = keras.Sequential([keras.Input((6,), name="x"), _Noise(), layers.Dense(3, activation="softmax")])
    with pytest.raises(RuntimeError, match="differs from the in-memory model"):
        keras_logits.export(noisy, tmp_path / "noisy", verify="in_process")
    with pytest.raises(ValueError, match="verify='quick' is not supported"):
        keras_logits.export(model, tmp_path / "x", verify="quick")


def test_fresh_process_verification_is_the_default_and_records_its_time(digits_export):
    verification = keras_logits.read_manifest(digits_export)["verification"]
    assert verification["process"] == "fresh" and verification["seconds"] > 0


class _PositionEmbedding(layers.Layer):
    """Adds a learned embedding per position, for sequences of at most `max_length` (as in BERT)."""

    def __init__(self, max_length, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length

    def build(self, input_shape):
        self.table = self.add_weight(shape=(self.max_length, input_shape[-1]), name="table")

    def call(self, x):
        return x + self.table[: keras.ops.shape(x)[1]]  # Longer sequences fail to broadcast.

    def compute_output_shape(self, input_shape):
        return input_shape


def bert_style_classifier(max_length=8, vocabulary=50):
    """Token ids (int32) + a bool padding mask, a learned position embedding of max_length."""
    keras.utils.set_random_seed(0)
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    mask = keras.Input((None,), dtype="bool", name="padding_mask")
    embedded = _PositionEmbedding(max_length, name="positions")(layers.Embedding(vocabulary, 8)(ids))
    hidden = layers.MultiHeadAttention(2, 4)(embedded, embedded, attention_mask=mask[:, None, :])
    pooled = layers.GlobalAveragePooling1D()(hidden, mask=mask)
    return keras.Model([ids, mask], layers.Dense(3, activation="softmax")(pooled))


# On JAX, Keras' ExportArchive converts with a symbolic sequence length, and jax2tf cannot prove that
# it broadcasts against a table of 8 positions ("shapes (batch, a, 8), (min(8, a), 8)"): upstream.
@pytest.mark.backends("tensorflow")
def test_bert_style_model_with_int_ids_bool_mask_and_max_length_8_exports_verified(tmp_path):
    from keras_logits.serving._export import FREE_LENGTH, sample_inputs

    model = bert_style_classifier()
    sample = sample_inputs(model)
    assert sample["token_ids"].shape == (4, FREE_LENGTH) and sample["token_ids"].max() < 50
    assert sample["padding_mask"].dtype == np.bool_ and sample["padding_mask"].all()
    path = keras_logits.export(model, tmp_path / "bert", verify="in_process")
    rng = np.random.default_rng(3)
    inputs = {"token_ids": rng.integers(0, 50, (5, 8)).astype("int32"), "padding_mask": np.arange(8)[None] < 6}
    inputs["padding_mask"] = np.repeat(inputs["padding_mask"], 5, 0)
    outputs, _ = load_in_this_process(path, inputs)
    expected = model.predict([inputs["token_ids"], inputs["padding_mask"]], verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-5)


@pytest.fixture(scope="module")
def text_classifier():
    vectorize = layers.TextVectorization(max_tokens=20, output_sequence_length=5)
    vectorize.adapt(["the cat sat on the mat", "a dog ran far away"])
    keras.utils.set_random_seed(0)
    text = keras.Input((1,), dtype="string", name="text")
    pooled = layers.GlobalAveragePooling1D()(layers.Embedding(20, 4)(vectorize(text)))
    return keras.Model(text, layers.Dense(3, activation="softmax")(pooled))


@pytest.mark.backends("tensorflow")  # TextVectorization runs TensorFlow string ops.
@pytest.mark.parametrize("verify", ["in_process", False])
def test_text_vectorization_model_with_a_string_input_exports(text_classifier, verify, tmp_path):
    path = keras_logits.export(text_classifier, tmp_path / "text", verify=verify)
    assert keras_logits.read_manifest(path)["inputs"] == [{"name": "text", "shape": [None, 1], "dtype": "string"}]
    texts = np.array([["the cat ran"], ["a mat far away"], ["unknown words"]])
    outputs, _ = load_in_this_process(path, {"text": texts})
    import tensorflow as tf

    expected = keras.ops.convert_to_numpy(text_classifier(tf.constant(texts)))
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-6)


def test_export_of_an_exposed_model_writes_the_same_head_as_export_of_the_original(trained_digits_cnn, tmp_path):
    original = keras_logits.export(trained_digits_cnn, tmp_path / "original", verify=False)
    exposed = keras_logits.export(keras_logits.expose(trained_digits_cnn), tmp_path / "exposed", verify=False)
    assert keras_logits.read_manifest(exposed)["head"] == keras_logits.read_manifest(original)["head"]


def test_export_of_a_logits_model_takes_activation_and_serves_its_softmax(tmp_path):
    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(3, name="scores")(inputs))  # outputs logits
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    path = keras_logits.export(model, tmp_path / "logits_model", activation="softmax", verify="in_process")
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept referenced: its variables live as long as it does
    served = loaded.serve(tf.constant(x))
    logits = model.predict(x, verbose=0)
    np.testing.assert_allclose(served["logits"].numpy(), logits, atol=1e-5)
    np.testing.assert_allclose(served["probabilities"].numpy(), np.exp(logits) / np.exp(logits).sum(-1, keepdims=True),
                               atol=1e-6)
    manifest = keras_logits.read_manifest(path)
    assert manifest["head"]["activation"] == "softmax" and manifest["verification"]["process"] == "this"
    with pytest.raises(ValueError, match="no activation"):
        keras_logits.export(model, tmp_path / "refused", verify=False)

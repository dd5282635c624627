"""Every `keras-logits` subcommand run as a subprocess on real model files."""

import json
import os
import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits.cli.demo import build_digits_cnn

# The CLI subprocesses pin KERAS_BACKEND=tensorflow (ONNX export, SavedModel predict); the
# library code they call is tested on every backend by the unit tests.
pytestmark = [pytest.mark.slow, pytest.mark.backends("tensorflow")]


def cli(*arguments, cwd=None):
    return subprocess.run([sys.executable, "-m", "keras_logits.cli", *map(str, arguments)], capture_output=True,
                          text=True, timeout=600, cwd=cwd, env={**os.environ, "KERAS_BACKEND": "tensorflow"})


@pytest.fixture(scope="module")
def files(tmp_path_factory, trained_digits_cnn, digits):
    root = tmp_path_factory.mktemp("cli")
    trained_digits_cnn.save(root / "digits.keras")
    (_, _), (x_test, _) = digits
    np.save(root / "images.npy", x_test[:5])
    (root / "classes.txt").write_text("\n".join(f"digit-{d}" for d in range(10)) + "\n")
    return root


def test_inspect_shows_the_head_parameters_and_the_layers_minus_two_trap(files, trained_digits_cnn):
    result = cli("inspect", files / "digits.keras")
    assert result.returncode == 0, result.stderr
    assert f"{trained_digits_cnn.count_params():,} parameters" in result.stdout
    assert "Head: softmax (fused into Dense 'classifier'), 10 classes" in result.stdout
    pooling = trained_digits_cnn.layers[-2].name  # auto-named: a suffix when other tests built one first
    assert f"Warning: model.layers[-2] is '{pooling}' (GlobalAveragePooling2D); its output is " \
           "NOT the logits (the softmax is fused into 'classifier')" in result.stdout
    assert "oneDNN" not in result.stderr


def test_inspect_says_when_layers_minus_two_is_the_logits(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Activation("softmax")(keras.layers.Dense(3, name="scores")(inputs)))
    model.save(tmp_path / "separate.keras")
    result = cli("inspect", tmp_path / "separate.keras")
    assert result.returncode == 0, result.stderr
    assert "model.layers[-2] ('scores') gives the logits on this model." in result.stdout


def test_expose_writes_a_keras_file_with_both_outputs(files, trained_digits_cnn, digits, tmp_path):
    result = cli("expose", files / "digits.keras", tmp_path / "exposed.keras", "--features")
    assert result.returncode == 0, result.stderr
    assert "outputs features, logits, probabilities" in result.stdout
    exposed = keras.saving.load_model(tmp_path / "exposed.keras", safe_mode=True)
    (_, _), (x_test, _) = digits
    outputs = exposed.predict(x_test[:8], verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], trained_digits_cnn.predict(x_test[:8], verbose=0), atol=1e-6)
    assert cli("expose", files / "digits.keras", tmp_path / "exposed.keras").returncode == 1  # No --overwrite.


def test_export_then_predict_from_the_saved_model_with_class_names(files, trained_digits_cnn, digits, tmp_path):
    result = cli("export", files / "digits.keras", tmp_path / "export", "--class-names", files / "classes.txt",
                 "--verify", "in_process")  # the fresh process: test_export_progress_names_the_verification...
    assert result.returncode == 0, result.stderr
    assert "verifying in this process" in result.stderr
    assert "logits (float32), probabilities (float32)" in result.stdout and \
        "verified with tf.saved_model.load (this process" in result.stdout
    inspected = cli("inspect", tmp_path / "export")
    assert "Classes: digit-0, digit-1" in inspected.stdout and "Output: class_id int64 [None]" in inspected.stdout

    predicted = cli("predict", tmp_path / "export", files / "images.npy", "--top-k", "2")
    assert predicted.returncode == 0, predicted.stderr
    rows = [line.split() for line in predicted.stdout.splitlines()[1:]]
    assert len(rows) == 10  # 5 samples x top 2
    (_, _), (x_test, _) = digits
    probabilities = trained_digits_cnn.predict(x_test[:5], verbose=0)
    for sample in range(5):
        first = rows[2 * sample]
        assert first[2] == f"digit-{probabilities[sample].argmax()}"
        assert float(first[4]) == pytest.approx(probabilities[sample].max(), abs=1e-5)


def test_export_onnx_format(files, tmp_path):
    result = cli("export", files / "digits.keras", tmp_path / "onnx", "--format", "onnx", "--verify", "in_process")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "onnx" / "model.onnx").is_file() and "verified with onnxruntime" in result.stdout


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_predict_keras_file_writes_all_outputs(files, trained_digits_cnn, digits, tmp_path, suffix):
    (_, _), (x_test, _) = digits
    csv_input = tmp_path / "images.csv"
    csv_input.write_text("\n".join(",".join(str(v) for v in row.ravel()) for row in x_test[:5]) + "\n")
    out = tmp_path / f"predictions{suffix}"
    result = cli("predict", files / "digits.keras", csv_input if suffix == ".csv" else files / "images.npy",
                 "--output", out)
    assert result.returncode == 0, result.stderr
    reference = keras.models.clone_model(trained_digits_cnn)
    reference.set_weights(trained_digits_cnn.get_weights())
    reference.layers[-1].activation = keras.activations.linear
    expected_logits = reference.predict(x_test[:5], verbose=0)
    if suffix == ".npz":
        saved = np.load(out)
        np.testing.assert_allclose(saved["logits"], expected_logits, atol=1e-4)
        np.testing.assert_array_equal(saved["class_id"], expected_logits.argmax(-1))
    else:
        table = np.loadtxt(out, delimiter=",", skiprows=1)
        np.testing.assert_allclose(table[:, 1:11], expected_logits, atol=1e-4)


def test_predict_image_folder(files, tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((20, 20)) * 255).astype("uint8")).save(folder / f"{i}.png")
    result = cli("predict", files / "digits.keras", folder, "--scale", 1 / 255, "--top-k", "1")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 + 3


def test_lambda_layer_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"
    inputs = keras.Input((4,))
    evil = keras.layers.Lambda(lambda x, path=str(marker): (open(path, "w").write("ran"), x)[1], name="evil")
    outputs = keras.layers.Dense(3, activation="softmax")(evil(inputs))
    model = keras.Model(inputs, outputs)
    marker.unlink()  # Building the model ran the lambda once, here, in the test process.
    model.save(tmp_path / "evil.keras")
    for command in (["inspect"], ["expose", "--overwrite"], ["export"], ["predict"]):
        arguments = [command[0], tmp_path / "evil.keras"]
        if command[0] == "expose":
            arguments += [tmp_path / "out.keras"]
        if command[0] == "export":
            arguments += [tmp_path / "exported"]
        if command[0] == "predict":
            np.save(tmp_path / "x.npy", np.zeros((1, 4)))
            arguments += [tmp_path / "x.npy"]
        result = cli(*arguments)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"Loading {tmp_path / 'evil.keras'}...",
            f"keras-logits: error: Refusing to load '{tmp_path / 'evil.keras'}': layer 'evil' (Lambda) runs Python "
            "code stored in the file. Pass --unsafe (unsafe=True) only if you trust where the file came from."]
    assert not marker.exists()
    assert not (tmp_path / "out.keras").exists() and not (tmp_path / "exported").exists()


@pytest.mark.parametrize("case", ["missing", "not_saved_model", "truncated", "wrong_shape"])
def test_bad_input_gives_one_line_exit_1_and_writes_nothing(files, tmp_path, case):
    out = tmp_path / "out.npz"
    if case == "missing":
        arguments = ["predict", tmp_path / "nope.keras", files / "images.npy", "--output", out]
        expected = "No such model file"
    elif case == "not_saved_model":
        (tmp_path / "folder").mkdir()
        arguments = ["inspect", tmp_path / "folder"]
        expected = "is a directory, not a model file"
    elif case == "truncated":
        data = (files / "digits.keras").read_bytes()
        (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
        arguments = ["predict", tmp_path / "cut.keras", files / "images.npy", "--output", out]
        expected = "not a valid .keras file"
    else:
        np.save(tmp_path / "bad.npy", np.zeros((2, 5, 5)))
        arguments = ["predict", files / "digits.keras", tmp_path / "bad.npy", "--output", out]
        expected = r"has shape \(2, 5, 5\), but the model expects \(batch, 8, 8, 1\)"
    result = cli(*arguments)
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("keras-logits: error:")]
    assert len(error_lines) == 1 and "Traceback" not in result.stderr
    import re

    assert re.search(expected, error_lines[0])
    assert not out.exists()


def test_usage_errors_exit_2_and_help_has_examples():
    assert cli("predict").returncode == 2
    assert cli("export", "m.keras", "d", "--format", "tflite").returncode == 2
    for command in ("inspect", "expose", "export", "predict", "demo"):
        result = cli(command, "--help")
        assert result.returncode == 0 and "Example:" in result.stdout and "keras-logits " + command in result.stdout


def test_debug_shows_the_traceback(tmp_path):
    result = cli("inspect", tmp_path / "nope.keras", "--debug")
    assert result.returncode == 1 and "Traceback" in result.stderr


# ---- seams: files the CLI wrote, multi-head models, per-position heads, dtypes, SavedModel scan ----


def test_a_file_written_by_expose_is_accepted_by_inspect_predict_and_export(files, trained_digits_cnn, digits,
                                                                            tmp_path):
    exposed = tmp_path / "exposed.keras"
    assert cli("expose", files / "digits.keras", exposed).returncode == 0
    inspected = cli("inspect", exposed)
    assert inspected.returncode == 0, inspected.stderr
    assert "Could not locate class" not in inspected.stderr
    out = tmp_path / "predictions.npz"
    predicted = cli("predict", exposed, files / "images.npy", "--output", out)
    assert predicted.returncode == 0, predicted.stderr
    (_, _), (x_test, _) = digits
    np.testing.assert_allclose(np.load(out)["probabilities"], trained_digits_cnn.predict(x_test[:5], verbose=0),
                               atol=1e-6)
    exported = cli("export", exposed, tmp_path / "export", "--verify", "in_process")
    assert exported.returncode == 0, exported.stderr
    assert "verified with tf.saved_model.load (this process, " in exported.stdout


@pytest.fixture(scope="module")
def two_head_file(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, {"kind": keras.layers.Dense(3, activation="softmax", name="kind")(hidden),
                                 "tags": keras.layers.Dense(5, activation="sigmoid", name="tags")(hidden)})
    root = tmp_path_factory.mktemp("two_heads")
    model.save(root / "two.keras")
    np.save(root / "x.npy", np.random.default_rng(0).normal(size=(4, 4)).astype("float32"))
    return model, root


def test_every_subcommand_picks_one_of_two_heads_with_head(two_head_file, tmp_path):
    model, root = two_head_file
    expected = model.predict(np.load(root / "x.npy"), verbose=0)
    inspected = cli("inspect", root / "two.keras", "--head", "tags")
    assert inspected.returncode == 0 and "output 'tags'" in inspected.stdout and "output 'kind'" not in inspected.stdout
    assert cli("expose", root / "two.keras", tmp_path / "tags.keras", "--head", "tags").returncode == 0
    assert sorted(keras.saving.load_model(tmp_path / "tags.keras").output) == ["logits", "probabilities"]
    exported = cli("export", root / "two.keras", tmp_path / "kind", "--head", "kind", "--no-verify")
    assert exported.returncode == 0, exported.stderr
    out = tmp_path / "p.npz"
    predicted = cli("predict", tmp_path / "kind", root / "x.npy", "--output", out)
    assert predicted.returncode == 0, predicted.stderr
    np.testing.assert_allclose(np.load(out)["probabilities"], expected["kind"], atol=1e-6)
    predicted = cli("predict", root / "two.keras", root / "x.npy", "--head", "tags", "--output", out)
    assert predicted.returncode == 0, predicted.stderr
    np.testing.assert_array_equal(np.load(out)["class_id"], (expected["tags"] >= 0.5).astype("int64"))
    refused = cli("predict", tmp_path / "kind", root / "x.npy", "--head", "tags")
    assert refused.returncode == 1 and "a SavedModel exported by keras-logits serves one head" in refused.stderr


def test_inspect_of_a_two_head_model_says_layers_minus_two_does_not_apply(two_head_file):
    _, root = two_head_file
    inspected = cli("inspect", root / "two.keras")
    assert inspected.returncode == 0, inspected.stderr
    assert "output 'kind'" in inspected.stdout and "output 'tags'" in inspected.stdout
    assert "model.layers[-2] ('kind') does not apply here: the model has 2 outputs ['kind', 'tags']" \
        in inspected.stdout
    assert "NOT the logits" not in inspected.stdout


def test_a_two_head_file_written_by_expose_takes_the_original_head_name(two_head_file, tmp_path):
    model, root = two_head_file
    assert cli("expose", root / "two.keras", tmp_path / "both.keras").returncode == 0
    inspected = cli("inspect", tmp_path / "both.keras", "--head", "tags")
    assert inspected.returncode == 0, inspected.stderr
    assert "Head: sigmoid (fused into Dense 'tags'), 5 classes on axis -1, output 'tags/probabilities'" \
        in inspected.stdout
    out = tmp_path / "p.npz"
    predicted = cli("predict", tmp_path / "both.keras", root / "x.npy", "--head", "tags", "--output", out)
    assert predicted.returncode == 0, predicted.stderr
    x = np.load(root / "x.npy")
    np.testing.assert_allclose(np.load(out)["probabilities"], model.predict(x, verbose=0)["tags"], atol=1e-6)
    hidden = keras.Model(model.inputs, model.get_layer("tags").input).predict(x, verbose=0).astype("float64")
    kernel, bias = model.get_layer("tags").get_weights()
    np.testing.assert_allclose(np.load(out)["logits"], hidden @ kernel + bias, atol=1e-5)


@pytest.mark.parametrize("command", ["export", "predict"])
def test_a_two_head_model_without_head_is_refused_naming_the_outputs_and_the_option(two_head_file, command,
                                                                                     tmp_path):
    _, root = two_head_file
    target = tmp_path / "out" if command == "export" else root / "x.npy"
    result = cli(command, root / "two.keras", target)
    assert result.returncode == 1
    assert "has 2 classification outputs ['kind', 'tags']. Pick one with --head NAME." in result.stderr
    assert "find_head(" not in result.stderr  # the Python API's advice, re-worded for the command line


@keras.saving.register_keras_serializable(package="test_cli")
class _Unknown(keras.layers.Layer):
    """Registered only in the test process: the CLI cannot locate it, and Keras' error dumps the config."""

    def call(self, x):
        return x


def test_a_long_error_is_one_line_capped_and_points_to_debug(tmp_path):
    from keras_logits.cli._main import MAX_ERROR_CHARACTERS, _one_line

    inputs = keras.Input((4,), name="x")
    hidden = _Unknown(name="unknown_" + "x" * 200)(inputs)
    keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(hidden)).save(tmp_path / "m.keras")
    result = cli("inspect", tmp_path / "m.keras")
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("keras-logits: error:")]
    assert result.returncode == 1 and len(error_lines) == 1 and "Traceback" not in result.stderr
    assert "it uses class '_Unknown', which is neither a Keras nor a keras-logits class" in error_lines[0]
    assert len(error_lines[0]) < MAX_ERROR_CHARACTERS
    config_dump = _one_line(ValueError("Could not deserialize: " + repr({"config": {"x" * 50: list(range(500))}})))
    assert len(config_dump) < MAX_ERROR_CHARACTERS + 100
    assert config_dump.endswith("characters; run with --debug for the whole message and the traceback)")


@pytest.fixture(scope="module")
def segmentation_file(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 5, 2), name="image")
    hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1, activation="softmax", name="segment")(hidden))
    root = tmp_path_factory.mktemp("segmentation")
    model.save(root / "seg.keras")
    np.save(root / "images.npy", np.random.default_rng(0).normal(size=(3, 6, 5, 2)).astype("float32"))
    return model, root


def test_predict_of_a_per_position_head_writes_class_ids_per_position_equal_to_the_numpy_argmax(
        segmentation_file, tmp_path):
    model, root = segmentation_file
    out = tmp_path / "p.npz"
    result = cli("predict", root / "seg.keras", root / "images.npy", "--top-k", "2", "--output", out)
    assert result.returncode == 0, result.stderr
    saved = np.load(out)
    probabilities = model.predict(np.load(root / "images.npy"), verbose=0)
    assert saved["class_id"].shape == (3, 6, 5)
    np.testing.assert_array_equal(saved["class_id"], probabilities.argmax(-1))
    np.testing.assert_array_equal(saved["top_k_class_id"], np.argsort(-probabilities, -1)[..., :2])
    np.testing.assert_allclose(saved["top_k_probability"][..., 0], probabilities.max(-1), atol=1e-6)


def test_predict_console_summarises_a_per_position_head_per_sample_and_inspect_names_the_positions(
        segmentation_file):
    model, root = segmentation_file
    result = cli("predict", root / "seg.keras", root / "images.npy", "--top-k", "1")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    ids = model.predict(np.load(root / "images.npy"), verbose=0).argmax(-1)
    for sample, row in enumerate(rows):
        counts = np.bincount(ids[sample].ravel(), minlength=4)
        assert row[:4] == [str(sample), "30", str(counts.argmax()), f"({counts.max()},"]
    assert "per-position head, positions (6, 5)" in cli("inspect", root / "seg.keras").stdout


def test_inspect_of_a_per_position_export_names_the_positions(segmentation_file, tmp_path):
    _, root = segmentation_file
    assert cli("export", root / "seg.keras", tmp_path / "export", "--no-verify").returncode == 0
    inspected = cli("inspect", tmp_path / "export")
    assert inspected.returncode == 0, inspected.stderr
    assert "per-position head, positions (6, 5)" in inspected.stdout
    assert "Output: class_id int64 [None, 6, 5]" in inspected.stdout


def test_predict_keeps_integer_ids_above_two_to_the_24_exact(tmp_path):
    keras.utils.set_random_seed(0)
    ids = keras.Input((2,), dtype="int64", name="ids")
    hashed = keras.layers.Hashing(num_bins=64)(ids)
    pooled = keras.layers.Flatten()(keras.layers.Embedding(64, 4)(hashed))
    model = keras.Model(ids, keras.layers.Dense(3, activation="softmax")(pooled))
    model.save(tmp_path / "hashing.keras")
    x = np.array([[2 ** 24 + 1, 2 ** 24 + 3], [2 ** 30 + 5, 7]], dtype="int64")
    np.save(tmp_path / "ids.npy", x)
    result = cli("predict", tmp_path / "hashing.keras", tmp_path / "ids.npy", "--output", tmp_path / "p.npz")
    assert result.returncode == 0, result.stderr
    expected = model.predict(x, verbose=0)
    assert not np.allclose(expected, model.predict(x.astype("float32").astype("int64"), verbose=0))
    np.testing.assert_allclose(np.load(tmp_path / "p.npz")["probabilities"], expected, atol=1e-6)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    vectorize = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=5)
    vectorize.adapt(["the cat sat on the mat", "a dog ran far away"])
    keras.utils.set_random_seed(0)
    text = keras.Input((1,), dtype="string", name="text")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(vectorize(text)))
    model = keras.Model(text, keras.layers.Dense(3, activation="softmax")(pooled))
    root = tmp_path_factory.mktemp("text")
    model.save(root / "text.keras")
    (root / "texts.txt").write_text("the cat ran\na mat far away\n")
    return model, root


@pytest.mark.parametrize("verify", [["--verify", "in_process"], ["--no-verify"]])
def test_export_and_predict_a_text_vectorization_model_with_string_inputs(text_file, verify, tmp_path):
    import tensorflow as tf

    model, root = text_file
    exported = cli("export", root / "text.keras", tmp_path / "export", *verify)
    assert exported.returncode == 0, exported.stderr
    expected = keras.ops.convert_to_numpy(model(tf.constant([["the cat ran"], ["a mat far away"]])))
    for source in (root / "text.keras", tmp_path / "export"):
        result = cli("predict", source, root / "texts.txt", "--output", tmp_path / "p.npz")
        assert result.returncode == 0, result.stderr
        np.testing.assert_allclose(np.load(tmp_path / "p.npz")["probabilities"], expected, atol=1e-6)


def test_predict_an_image_folder_of_several_sizes_needs_image_size(tmp_path):
    from PIL import Image

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled)).save(tmp_path / "any_size.keras")
    folder = tmp_path / "images"
    folder.mkdir()
    for i, size in enumerate([(20, 30), (16, 16)]):
        Image.fromarray((np.random.default_rng(i).random(size + (3,)) * 255).astype("uint8")).save(folder / f"{i}.png")
    refused = cli("predict", tmp_path / "any_size.keras", folder)
    assert refused.returncode == 1 and "pass --image-size HEIGHT WIDTH" in refused.stderr
    resized = cli("predict", tmp_path / "any_size.keras", folder, "--image-size", "12", "12", "--top-k", "1")
    assert resized.returncode == 0, resized.stderr
    assert len(resized.stdout.splitlines()) == 1 + 2


WRITER_SAVED_MODEL = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
marker, path = sys.argv[1:]

class Module(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(self, x):
        tf.io.write_file(marker, "ran")
        return {"logits": x, "probabilities": tf.nn.softmax(x)}

module = Module()
tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
"""


def test_predict_refuses_a_saved_model_that_writes_files_unless_unsafe(tmp_path):
    marker, path = tmp_path / "written", tmp_path / "writer"
    subprocess.run([sys.executable, "-c", WRITER_SAVED_MODEL, str(marker), str(path)], check=True, timeout=600)
    np.save(tmp_path / "x.npy", np.zeros((2, 3), "float32"))
    refused = cli("predict", path, tmp_path / "x.npy")
    assert refused.returncode == 1
    assert "Refusing to load SavedModel" in refused.stderr and "WriteFile" in refused.stderr
    assert not marker.exists()
    trusted = cli("predict", path, tmp_path / "x.npy", "--unsafe")
    assert trusted.returncode == 0, trusted.stderr
    assert marker.read_text() == "ran"


def test_the_reference_export_passes_the_scan(tmp_path):
    from tests.integration.test_reference_exports import REFERENCE

    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8, 1), "float32"))
    result = cli("predict", REFERENCE / "digits_cnn", tmp_path / "x.npy")
    assert result.returncode == 0, result.stderr


def test_export_progress_names_the_verification_and_its_time(files, tmp_path):
    result = cli("export", files / "digits.keras", tmp_path / "export")
    assert result.returncode == 0, result.stderr
    assert "verifying in a fresh process" in result.stderr
    assert re.search(r"verified with tf.saved_model.load \(fresh process, \d+\.\d s\)", result.stdout)

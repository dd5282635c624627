"""Every `keras-logits` subcommand run as a subprocess on real model files."""

import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits.demo import build_digits_cnn

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
    assert "Warning: model.layers[-2] is 'global_average_pooling2d' (GlobalAveragePooling2D); its output is " \
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
    result = cli("export", files / "digits.keras", tmp_path / "export", "--class-names", files / "classes.txt")
    assert result.returncode == 0, result.stderr
    assert "verifying in a fresh process" in result.stderr
    assert "logits (float32), probabilities (float32)" in result.stdout and "verified with tf.saved_model.load" in \
        result.stdout
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
    result = cli("export", files / "digits.keras", tmp_path / "onnx", "--format", "onnx")
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

"""Loading model files never runs code stored in them unless the caller opts in.

Each loading path gets a file whose Lambda layer would write a marker file when run. The
marker is a relative path (tests run in their tmp_path): a constant in the lambda's code, which
Keras serializes, unlike default arguments.
"""

import keras
import numpy as np
import pytest

from keras_logits.cli._loading import UnsafeModelError, load_keras_model


MARKER = "pwned_marker"


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def evil_model(marker, nested=False):
    inputs = keras.Input((4,))
    evil = keras.layers.Lambda(lambda x: (open("pwned_marker", "w").write("ran"), x)[1], name="evil")
    if nested:
        inner_inputs = keras.Input((4,))
        evil = keras.Model(inner_inputs, evil(inner_inputs), name="inner")
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(evil(inputs)))
    marker.unlink()  # building it ran the lambda once, here, in the test process
    return model


def saved_evil_model(tmp_path, name="evil.keras", nested=False):
    """(marker path, model file path) of a saved model whose Lambda would write the marker."""
    marker, path = tmp_path / MARKER, tmp_path / name
    evil_model(marker, nested).save(path)
    return marker, path


@pytest.mark.parametrize("suffix,nested", [(".keras", False), (".keras", True), (".h5", False)])
def test_load_keras_model_refuses_lambda_layers_without_running_them(tmp_path, suffix, nested):
    marker, path = saved_evil_model(tmp_path, f"evil{suffix}", nested)
    with pytest.raises(UnsafeModelError, match="layer 'evil' \\(Lambda\\) runs Python code stored in the file"):
        load_keras_model(path)
    assert not marker.exists()


def test_keras_safe_mode_still_guards_a_file_whose_config_hides_the_lambda(tmp_path):
    """If the JSON pre-scan missed a layer, Keras' own safe_mode refuses the bytecode."""
    import json
    import zipfile

    marker, path = saved_evil_model(tmp_path)
    disguised = tmp_path / "disguised.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(disguised, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                data = json.dumps(json.loads(data)).replace('"class_name": "Lambda"', '"class_name": "Lambda "').encode()
            target.writestr(item, data)
    with pytest.raises(ValueError):
        load_keras_model(disguised)
    assert not marker.exists()


def test_unsafe_true_is_the_explicit_opt_in(tmp_path):
    marker, path = saved_evil_model(tmp_path, "trusted.keras")
    model = load_keras_model(path, unsafe=True)
    model.predict(np.zeros((1, 4)), verbose=0)
    assert marker.read_text() == "ran"


LOAD_WITHOUT_PACKAGE_IMPORTS = r"""
import sys
import numpy as np
from keras_logits.cli._loading import load_keras_model  # "keras_logits.cli" in argv: the package registers nothing
model = load_keras_model(sys.argv[1])
np.save(sys.argv[2], model.predict(np.load(sys.argv[3]), verbose=0)["logits"])
"""


def test_files_written_by_expose_load_in_safe_mode_where_nothing_registered_the_package(tmp_path):
    import os
    import subprocess
    import sys

    import keras_logits

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    exposed = keras_logits.expose(model, temperature=2.0)  # PreActivation and Temperature layers
    exposed.save(tmp_path / "exposed.keras")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    subprocess.run([sys.executable, "-c", LOAD_WITHOUT_PACKAGE_IMPORTS, tmp_path / "exposed.keras",
                    tmp_path / "logits.npy", tmp_path / "x.npy", "keras_logits.cli"], check=True, timeout=600,
                   capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    reference = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    reference.set_weights(model.get_weights())
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), reference.predict(x, verbose=0) / 2.0, atol=1e-6)

"""The package re-exports its public API, and submodules never shadow it."""

import importlib
import pkgutil

import pytest

import keras_logits


def test_public_names_stay_functions_and_classes_after_every_submodule_is_imported():
    for module in pkgutil.iter_modules(keras_logits.__path__):
        importlib.import_module(f"keras_logits.{module.name}")
    for name in keras_logits.__all__:
        value = getattr(keras_logits, name)
        assert callable(value) or name in keras_logits._SUBMODULES, f"keras_logits.{name} is {value!r}"
    assert callable(keras_logits.expose) and callable(keras_logits.find_head)


def test_importing_the_package_registers_its_layers_for_load_model(tmp_path):
    import subprocess
    import sys

    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    keras_logits.expose(model).save(tmp_path / "exposed.keras")
    code = ("import sys, keras, numpy, keras_logits; m = keras.saving.load_model(sys.argv[1], safe_mode=True); "
            "print(sorted(m.predict(numpy.zeros((1, 3)), verbose=0)))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "exposed.keras")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "['logits', 'probabilities']"


@pytest.mark.parametrize("backend", [pytest.param(name, marks=pytest.mark.backends(name)) for name in ("jax", "torch")])
def test_importing_every_module_does_not_import_tensorflow_until_an_export_runs(backend):
    import os
    import subprocess
    import sys

    code = ("import sys, pkgutil, importlib, keras_logits\n"
            "for m in pkgutil.iter_modules(keras_logits.__path__):\n"
            "    importlib.import_module('keras_logits.' + m.name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": backend})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"

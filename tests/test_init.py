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


# The package first, then the modules a JAX or torch user trains with, then every other module.
TENSORFLOW_FREE_IMPORTS = """
import importlib, pkgutil, sys
import keras_logits
names = ["keras_logits", *("keras_logits." + name for name in ("metrics", "callbacks", "calibration", "head",
                                                              "layers"))]
def modules(path, prefix):  # from the file system: walk_packages would import the subpackages first
    for module in pkgutil.iter_modules(path):
        if module.name != "__main__":  # importing it runs the command line tool
            yield prefix + module.name
            if module.ispkg:
                yield from modules([f"{path[0]}/{module.name}"], f"{prefix}{module.name}.")
names += sorted(set(modules(keras_logits.__path__, "keras_logits.")) - set(names))
for name in names:
    importlib.import_module(name)
    if "tensorflow" in sys.modules:
        print("TensorFlow imported by", name)
        break
else:
    print("no TensorFlow")
"""


@pytest.mark.parametrize("backend", [pytest.param(name, marks=pytest.mark.backends(name)) for name in ("jax", "torch")])
def test_importing_the_package_and_every_module_imports_no_tensorflow_until_an_export_runs(backend):
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", TENSORFLOW_FREE_IMPORTS], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "KERAS_BACKEND": backend})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "no TensorFlow"

"""The package re-exports its public API, and submodules never shadow it."""

import importlib
import pkgutil

import keras_logits


def test_public_names_stay_functions_and_classes_after_every_submodule_is_imported():
    for module in pkgutil.iter_modules(keras_logits.__path__):
        importlib.import_module(f"keras_logits.{module.name}")
    for name in keras_logits.__all__:
        value = getattr(keras_logits, name)
        assert callable(value) or name == "layers", f"keras_logits.{name} is {value!r}"
    assert callable(keras_logits.expose) and callable(keras_logits.find_head)


def test_importing_the_package_does_not_import_keras_until_needed():
    import subprocess
    import sys

    code = "import sys, keras_logits; print('keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

"""Load model files handed over by someone else, without running code hidden in them.

`.keras` and `.h5` files are read with Keras' `safe_mode=True`, and their
configuration is scanned first (as JSON, nothing executed) so that a refusal
names the layer that carries Python code.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import Union

# Layers whose config carries Python code (marshalled bytecode or a function to import).
UNSAFE_LAYERS = ("Lambda",)


class UnsafeModelError(ValueError):
    """The file holds layers that run arbitrary Python code when loaded."""


def is_saved_model(path: Union[str, os.PathLike]) -> bool:
    """True for a TensorFlow SavedModel directory."""
    return Path(path).is_dir() and (Path(path) / "saved_model.pb").is_file()


def load_keras_model(path: Union[str, os.PathLike], *, unsafe: bool = False):
    """Loads a `.keras` or `.h5` model file in Keras' safe mode.

    Args:
        path: The model file.
        unsafe: Allow layers that run Python code stored in the file (Lambda).
            Only for files you trust.

    Returns:
        The `keras.Model`, not compiled.

    Example:

    >>> import keras, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
    >>> keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")]).save(path)
    >>> load_keras_model(path).layers[-1].activation.__name__
    'softmax'
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such model file: '{path}'.")
    if path.is_dir():
        if is_saved_model(path):
            raise ValueError(
                f"'{path}' is a TensorFlow SavedModel; this step needs the Keras model. Pass the "
                ".keras file it was exported from."
            )
        raise ValueError(f"'{path}' is a directory, not a model file (.keras, .h5) or a SavedModel.")
    config = _read_config(path)
    if not unsafe:
        unsafe_layers = sorted(_unsafe_layers(config))
        if unsafe_layers:
            names = ", ".join(f"'{name}' ({kind})" for kind, name in unsafe_layers)
            raise UnsafeModelError(
                f"Refusing to load '{path}': layer {names} runs Python code stored in the file. "
                "Pass --unsafe (unsafe=True) only if you trust where the file came from."
            )
    import keras

    # The package's layers (PreActivation, Temperature, LogitsHead) and metrics must be registered
    # before loading, or files written by `expose` fail with "Could not locate class".
    from keras_logits import layers, metrics  # noqa: F401

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as error:
        unknown = re.search(r"Could not locate class '([^']+)'", str(error))
        if unknown:  # Keras' message around it is the whole model config: kilobytes.
            raise ValueError(
                f"Cannot load '{path}': it uses class '{unknown.group(1)}', which is neither a Keras nor a "
                "keras-logits class. Load it in Python after importing the module that defines (and registers) "
                "it, then call keras_logits.expose / export on the model."
            ) from error
        raise ValueError(f"Cannot load '{path}': {error}") from error


def _read_config(path: Path) -> dict:
    """The model's architecture as JSON, read without deserializing anything."""
    suffix = path.suffix.lower()
    if suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        except (zipfile.BadZipFile, KeyError, EOFError, json.JSONDecodeError) as error:
            raise ValueError(
                f"Cannot load '{path}': it is not a valid .keras file ({error}). It may be truncated; "
                "save it again with model.save()."
            ) from None
    if suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as file:
                raw = file.attrs.get("model_config")
        except OSError as error:
            raise ValueError(f"Cannot load '{path}': it is not a valid HDF5 model file ({error}).") from None
        if raw is None:
            raise ValueError(f"Cannot load '{path}': the HDF5 file holds weights only, no model config.")
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    raise ValueError(f"Cannot load '{path}': expected a .keras or .h5 file or a SavedModel directory.")


def _unsafe_layers(config):
    """Yields (class name, layer name) of every unsafe layer, nested models included."""
    if isinstance(config, dict):
        if config.get("class_name") in UNSAFE_LAYERS:
            inner = config.get("config", {})
            yield config["class_name"], inner.get("name", "?") if isinstance(inner, dict) else "?"
        for value in config.values():
            yield from _unsafe_layers(value)
    elif isinstance(config, list):
        for value in config:
            yield from _unsafe_layers(value)

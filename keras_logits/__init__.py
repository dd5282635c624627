"""keras-logits: every Keras classifier's logits and probabilities, in one forward pass.

The public API is re-exported here and imported on first use, so that the
command line tool can quiet TensorFlow before Keras is imported.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "Head": "keras_logits.head",
    "find_head": "keras_logits.head",
    "find_heads": "keras_logits.head",
    "expose": "keras_logits.expose_model",
    "export": "keras_logits.export_model",
    "read_manifest": "keras_logits.export_model",
    "LogitsHead": "keras_logits.layers",
    "PreActivation": "keras_logits.layers",
}
_SUBMODULES = ("layers",)

__all__ = sorted([*_PUBLIC, *_SUBMODULES])


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"keras_logits.{name}")
    else:
        raise AttributeError(f"module 'keras_logits' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__

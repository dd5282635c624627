"""keras-logits: every Keras classifier's logits and probabilities, in one forward pass.

The public API is re-exported here. Importing the package registers its
serializable layers and metrics with Keras, so `keras.saving.load_model` reads
exposed models after `import keras_logits`. The one exception is the command
line tool, which quiets TensorFlow's start-up logs before Keras is imported.
"""

import importlib
import os
import sys

__version__ = "0.1.0"

_PUBLIC = {
    "Head": "keras_logits.head",
    "find_head": "keras_logits.head",
    "find_heads": "keras_logits.head",
    "expose": "keras_logits._expose",
    "ensure_exposed": "keras_logits._expose",
    "export": "keras_logits.serving",
    "read_manifest": "keras_logits.serving",
    "LogitsHead": "keras_logits.layers",
    "PreActivation": "keras_logits.layers",
    "Temperature": "keras_logits.layers",
    "LogitsLogger": "keras_logits.callbacks",
    "TemperatureScaling": "keras_logits.calibration",
    "reliability_report": "keras_logits.calibration",
    "check_model": "keras_logits.checks",
    "Finding": "keras_logits.checks",
    "logits_model": "keras_logits.distillation",
}
_SUBMODULES = ("calibration", "callbacks", "checks", "distillation", "hub", "layers", "metrics", "plots", "scores",
               "statistics")

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


def _started_as_command_line_tool() -> bool:
    arguments = getattr(sys, "orig_argv", sys.argv)
    return os.path.basename(sys.argv[0]) == "keras-logits" or "keras_logits.cli" in arguments


if not _started_as_command_line_tool():
    from keras_logits import layers, metrics  # noqa: E402,F401  (registers serializable classes)

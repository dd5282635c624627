"""Check an export the way a consumer meets it: in a fresh process without keras_logits."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

from keras_logits._class_ids import undecided
from keras_logits.serving._runtime import call_saved_model, load_saved_model

# Runs in a fresh interpreter: plain TensorFlow or onnxruntime, no Keras, no keras_logits.
_CONSUMER = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
export_dir, format, sample_path, result_path = sys.argv[1:5]
sample = dict(np.load(sample_path))
if format == "tf_saved_model":
    import tensorflow as tf
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    outputs = {k: v.numpy() for k, v in serve(**{k: tf.constant(v) for k, v in sample.items()}).items()}
else:
    import onnxruntime
    session = onnxruntime.InferenceSession(os.path.join(export_dir, "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, sample)))
if "keras_logits" in sys.modules:
    raise SystemExit("the consumer process imported keras_logits")
np.savez(result_path, **outputs)
"""


# Rounding of the lowest compute precision in the graph: float32 graphs are held to 1e-5; a
# mixed-precision graph computes in half precision, where a converter (tf2onnx) or another kernel
# may round differently by a few units of float16's 9.8e-4 (bfloat16's 7.8e-3) epsilon.
PRECISION = {"float32": 1e-5, "float64": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


def tolerances(expected: dict, precision: float = PRECISION["float32"]) -> dict:
    """Absolute tolerance per output: logits `precision` of their scale, probabilities `precision`, ids exact.

    Example:

    >>> limits = tolerances({"logits": np.array([[30.0, -2.0]]), "probabilities": np.array([[1.0, 0.0]]),
    ...                      "class_id": np.array([0])})
    >>> {name: round(float(value), 8) for name, value in limits.items()}
    {'logits': 0.0003, 'probabilities': 1e-05, 'class_id': 0.0}
    """
    result = {}
    for name, values in expected.items():
        if name.endswith("class_id"):
            result[name] = 0.0
        elif name.endswith("logits") or name.endswith("features"):
            result[name] = precision * max(1.0, float(np.abs(values).max(initial=0.0)))
        else:
            result[name] = precision
    return result


def run_consumer(export_dir: str, format: str, sample: dict, timeout: float = 600) -> dict:
    """Loads the export in a fresh Python process and returns its outputs for `sample`."""
    with tempfile.TemporaryDirectory(prefix="keras-logits-verify-") as scratch:
        sample_path = os.path.join(scratch, "sample.npz")
        result_path = os.path.join(scratch, "result.npz")
        np.savez(sample_path, **sample)
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        completed = subprocess.run(
            [sys.executable, "-c", _CONSUMER, export_dir, format, sample_path, result_path],
            capture_output=True, text=True, timeout=timeout, env=environment, cwd=scratch,
        )
        if completed.returncode != 0:
            tail = "\n".join(completed.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"the exported {format} could not be loaded and run in a fresh process:\n{tail}")
        with np.load(result_path) as result:
            return {name: result[name] for name in result.files}


def compare(expected: dict, actual: dict, format: str, precision: float = PRECISION["float32"], *,
            activation: str, axis: int = -1) -> dict:
    """Raises when outputs differ beyond `tolerances(expected, precision)`; returns the max differences.

    Class ids must be equal except where the head's rule (`activation` over
    class axis `axis`) could go either way within the probabilities' tolerance.
    """
    if sorted(actual) != sorted(expected):
        raise RuntimeError(f"the exported {format} has outputs {sorted(actual)}, expected {sorted(expected)}")
    limits, differences = tolerances(expected, precision), {}
    for name, want in expected.items():
        got = actual[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise RuntimeError(
                f"the exported {format} output '{name}' is {got.dtype}{list(got.shape)}, "
                f"the in-memory model gives {want.dtype}{list(want.shape)}"
            )
        difference = float(np.abs(got.astype("float64") - want.astype("float64")).max(initial=0.0))
        differences[name] = difference
        if difference > limits[name] and not (name.endswith("class_id") and
                                              _ties_only(expected, got, activation, axis, precision)):
            raise RuntimeError(
                f"the exported {format} output '{name}' differs from the in-memory model by "
                f"{difference:.3g} (tolerance {limits[name]:.3g}); the export was not installed"
            )
    return differences


def _ties_only(expected: dict, class_id: np.ndarray, activation: str, axis: int, precision: float) -> bool:
    """True when class ids differ only where the rule is undecided within the probabilities' tolerance."""
    probabilities = expected.get("probabilities")
    if probabilities is None:
        return False
    mismatched = class_id != expected["class_id"]
    return bool(np.all(undecided(probabilities, activation, axis, tolerance=precision)[mismatched]))


def run_in_process(export_dir: str, format: str, sample: dict) -> dict:
    """Loads the export in this process (tf.saved_model.load or onnxruntime) and returns its outputs.

    Cheaper than `run_consumer` (no interpreter or TensorFlow start-up); it
    proves the written graph and variables reproduce the model, not that the
    export loads without what this process imported.
    """
    if format == "tf_saved_model":
        return call_saved_model(load_saved_model(export_dir), sample)
    import onnxruntime

    session = onnxruntime.InferenceSession(os.path.join(export_dir, "model.onnx"), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, sample)))

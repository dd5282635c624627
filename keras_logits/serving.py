"""TensorFlow-only serving graph: the exposed outputs plus `class_id`, written as SavedModel or ONNX.

TensorFlow is imported here, lazily, and nowhere else in the package, so that
`import keras_logits` works on the JAX and torch backends.
"""

from __future__ import annotations

import importlib
import os
import warnings

import keras

ONNX_FILE = "model.onnx"
ONNX_PACKAGES = ("tf2onnx", "onnx")


def require_tensorflow_backend(what: str) -> None:
    """Raises a clear error when `what` needs the TensorFlow backend and it is not active."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{what} writes TensorFlow graphs and needs the TensorFlow backend; the active Keras "
            f"backend is '{backend}'. Run with KERAS_BACKEND=tensorflow (TensorFlow installed), "
            "or save a .keras file here and export it from a TensorFlow-backend process."
        )


def require_packages(packages, extra: str, what: str) -> None:
    """Raises ImportError naming the missing packages and the extra that installs them."""
    missing = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed. Install them with: pip install 'keras-logits[{extra}]'"
        )


def serving_model(exposed, *, activation: str, axis: int):
    """Adds `class_id` (int64 argmax, or a 0/1 vector at 0.5 for sigmoid) to the exposed outputs."""
    outputs = dict(exposed._outputs_struct)
    outputs["class_id"] = _ClassId(activation, axis, name="class_id")(outputs["probabilities"])
    return keras.Model(exposed.inputs, outputs, name=f"{exposed.name}_serving")


class _ClassId(keras.layers.Layer):
    """Class ids from probabilities, as int64.

    `tf.argmax(..., output_type=tf.int64)` rather than `keras.ops.argmax`: the
    latter exports a Bitcast node to ONNX that onnxruntime rejects.
    """

    def __init__(self, activation: str, axis: int, **kwargs):
        super().__init__(**kwargs)
        self.activation, self.axis = activation, axis

    def call(self, probabilities):
        import tensorflow as tf

        if self.activation == "sigmoid":
            return tf.cast(probabilities >= 0.5, tf.int64)
        return tf.argmax(probabilities, axis=self.axis, output_type=tf.int64)

    def compute_output_spec(self, probabilities):
        shape = list(probabilities.shape)
        if self.activation != "sigmoid":
            del shape[self.axis]
        return keras.KerasTensor(tuple(shape), dtype="int64")


def write(model, directory: str, format: str) -> None:
    """Writes `model`'s serving graph into the existing, empty `directory`."""
    if format == "tf_saved_model":
        model.export(directory, format="tf_saved_model", verbose=False)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # tf2onnx probes np.object.
            model.export(os.path.join(directory, ONNX_FILE), format="onnx", verbose=False)


def versions() -> dict:
    """Library versions recorded in the manifest."""
    import tensorflow as tf

    from keras_logits import __version__

    return {"keras_logits": __version__, "keras": keras.__version__, "tensorflow": tf.__version__}

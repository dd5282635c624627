"""The serving graph: the exposed outputs plus `class_id`, written as SavedModel or ONNX.

TensorFlow is imported lazily, here and in the other modules of
`keras_logits.serving` only, so that `import keras_logits` works on the JAX and
torch backends. SavedModels are
written from the TensorFlow backend directly and from the JAX backend through
Keras' `ExportArchive` (jax2tf; TensorFlow must be installed). ONNX needs the
TensorFlow backend; the torch backend cannot write either.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings

import keras

from keras_logits._class_ids import SIGMOID_THRESHOLD, check_activation
from keras_logits._graph import model_inputs, model_outputs
from keras_logits.serving._runtime import as_model_input

ONNX_FILE = "model.onnx"
ONNX_PACKAGES = ("tf2onnx", "onnx")


EXPORT_BACKENDS = {"tf_saved_model": ("tensorflow", "jax"), "onnx": ("tensorflow",)}


def require_export_backend(format: str) -> None:
    """Raises a clear error when the active backend cannot write `format`."""
    backend = keras.backend.backend()
    allowed = EXPORT_BACKENDS[format]
    if backend not in allowed:
        raise RuntimeError(
            f"export(format={format!r}) needs the {' or '.join(allowed)} backend; the active Keras "
            f"backend is '{backend}'. Run with KERAS_BACKEND={allowed[0]}, or save a .keras file here "
            f"(model.save('model.keras')) and export it there: KERAS_BACKEND={allowed[0]} "
            "keras-logits export model.keras <dir>."
        )
    try:
        importlib.import_module("tensorflow")
    except ImportError:
        raise ImportError(
            f"export(format={format!r}) writes TensorFlow graphs and needs TensorFlow installed "
            "(pip install 'keras-logits[tensorflow]'), also on the JAX backend."
        ) from None


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
    """Adds `class_id` (int64 argmax, or a 0/1 vector at 0.5 for sigmoid: `_class_ids`' rule) to the outputs.

    A single-input model takes its input as a tensor, not a list of one, so
    the exported `serve(x)` accepts a tensor as Keras' own `model.export` does.

    Example:

    >>> import keras, keras_logits
    >>> model = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(3, activation="softmax")])
    >>> exposed, head = keras_logits.ensure_exposed(model)
    >>> sorted(serving_model(exposed, activation="softmax", axis=-1).output)
    ['class_id', 'logits', 'probabilities']
    """
    outputs = model_outputs(exposed)
    outputs["class_id"] = _ClassId(activation, axis, name="class_id")(outputs["probabilities"])
    inputs = exposed.inputs[0] if len(exposed.inputs) == 1 else exposed.inputs
    return keras.Model(inputs, outputs, name=f"{exposed.name}_serving")


def outputs_of(model, sample: dict) -> dict:
    """NumPy outputs of the serving `model` for `sample` (keyed by input name), class ids as int64.

    A direct call rather than `predict`: `predict` traces a new tf.function
    per model, and TensorFlow warns about retracing after five exports in one
    process.

    Example:

    >>> import keras, numpy as np, keras_logits
    >>> model = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(3, activation="softmax")])
    >>> graph = serving_model(keras_logits.expose(model), activation="softmax", axis=-1)
    >>> outputs_of(graph, {"x": np.ones((2, 4), "float32")})["class_id"].dtype
    dtype('int64')
    """
    arrays = [as_model_input(sample[tensor.name]) for tensor in model.inputs]
    outputs = model(arrays[0] if len(arrays) == 1 else arrays, training=False)
    result = {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}
    result["class_id"] = result["class_id"].astype("int64")  # int32 from the JAX backend
    return result


class _ClassId(keras.layers.Layer):
    """Class ids from probabilities by `_class_ids`' rule: int64 on TensorFlow, int32 elsewhere (cast on export).

    `tf.argmax(..., output_type=tf.int64)` rather than `keras.ops.argmax` on
    TensorFlow: the latter exports a Bitcast node to ONNX that onnxruntime
    rejects. JAX without x64 has no int64, so there the TensorFlow wrapper of
    the converted graph casts.
    """

    def __init__(self, activation: str, axis: int, **kwargs):
        super().__init__(**kwargs)
        self.activation, self.axis = check_activation(activation), axis
        # Class ids end the serving graph: a padding mask stops here, on purpose and without a warning.
        self.supports_masking = True

    def compute_mask(self, probabilities, mask=None):
        return None

    def call(self, probabilities):
        if keras.backend.backend() != "tensorflow":
            if self.activation == "sigmoid":
                return keras.ops.cast(probabilities >= SIGMOID_THRESHOLD, "int32")
            return keras.ops.cast(keras.ops.argmax(probabilities, axis=self.axis), "int32")
        import tensorflow as tf

        if self.activation == "sigmoid":
            return tf.cast(probabilities >= SIGMOID_THRESHOLD, tf.int64)
        return tf.argmax(probabilities, axis=self.axis, output_type=tf.int64)

    def compute_output_spec(self, probabilities):
        shape = list(probabilities.shape)
        if self.activation != "sigmoid":
            del shape[self.axis]
        return keras.KerasTensor(tuple(shape), dtype="int64" if keras.backend.backend() == "tensorflow" else "int32")


def write(model, directory: str, format: str) -> None:
    """Writes `model`'s serving graph into the existing, empty `directory`."""
    if format == "tf_saved_model" and keras.backend.backend() == "jax":
        try:
            _write_saved_model_from_jax(model, directory)
        except Exception as error:  # jax2tf cannot trace every graph with free dimensions (e.g. Resizing)
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
            reason = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
            raise RuntimeError(
                f"The JAX backend cannot convert model '{model.name}' to a SavedModel (jax2tf: {reason[:200]}). "
                "Export it on the TensorFlow backend: save a .keras file and run KERAS_BACKEND=tensorflow "
                "keras-logits export model.keras <dir>."
            ) from error
    elif format == "tf_saved_model":
        model.export(directory, format="tf_saved_model", verbose=False)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # tf2onnx probes np.object.
            model.export(os.path.join(directory, ONNX_FILE), format="onnx", verbose=False)


def _write_saved_model_from_jax(model, directory: str) -> None:
    """jax2tf-converts `model` with Keras' ExportArchive; a TensorFlow signature casts class_id to int64.

    The signature takes one keyword argument per model input, named as the
    inputs, like the TensorFlow backend's `model.export`.
    """
    import tensorflow as tf

    specs = [tf.TensorSpec(tuple(t.shape), keras.backend.standardize_dtype(t.dtype), name=t.name)
             for t in model.inputs]
    structure = model_inputs(model)

    def call(*tensors):
        if isinstance(structure, dict):
            return model(dict(zip(structure, tensors)))
        return model(list(tensors) if len(tensors) > 1 else tensors[0])

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("outputs", call, input_signature=specs)
    trackable = archive._tf_trackable  # The tf.Module holding the converted endpoint and the variables.
    converted = trackable.outputs

    @tf.function(input_signature=specs, autograph=False)
    def serve(*tensors):
        outputs = dict(converted(*tensors))
        outputs["class_id"] = tf.cast(outputs["class_id"], tf.int64)
        return outputs

    trackable.serve = serve
    tf.saved_model.save(trackable, directory, signatures={"serving_default": serve.get_concrete_function()})


def versions() -> dict:
    """Library versions recorded in the manifest."""
    import tensorflow as tf

    from keras_logits import __version__

    return {"keras_logits": __version__, "keras": keras.__version__, "tensorflow": tf.__version__}

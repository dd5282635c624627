"""TensorFlow in this process: whether it is installed, its start, and SavedModels loaded and called here.

Everything outside `keras_logits.serving` that needs TensorFlow (the command
line's quiet start, its SavedModel predictor, string inputs of Keras models)
comes through these functions, which import TensorFlow only when called.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Callable, Union

import numpy as np


def tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported, found without importing it.

    Example:

    >>> isinstance(tensorflow_installed(), bool)
    True
    """
    return importlib.util.find_spec("tensorflow") is not None


def start_tensorflow() -> None:
    """Imports TensorFlow, keeps its Python logger to errors and probes its devices now.

    TensorFlow looks for CUDA on first use and logs what it finds; a caller
    that hides start-up lines (the command line, which points file
    descriptor 2 at /dev/null meanwhile) calls this while they are hidden.
    """
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.config.list_physical_devices()


def as_model_input(array):
    """A NumPy str array as a TensorFlow string tensor (Keras has no string dtype); any other array as it is.

    Example:

    >>> import numpy as np
    >>> as_model_input(np.zeros((2, 3))).shape
    (2, 3)
    """
    if np.asarray(array).dtype.kind in "US":
        import tensorflow as tf

        return tf.constant(array)
    return array


@dataclasses.dataclass(frozen=True)
class ServingSignature:
    """A SavedModel's serving signature, loaded in this process, with its inputs and outputs in plain types.

    `inputs` maps each input name to `(shape, dtype)`: the shape with None for
    free dimensions, the dtype's name (`"float32"`, `"int64"`, `"string"`).
    `outputs` holds the output names, sorted.
    """

    inputs: dict
    outputs: tuple
    function: Callable
    saved_model: object  # Kept referenced: the function's variables live as long as the loaded object.


def load_saved_model(path: Union[str, os.PathLike], signature: str = "serving_default") -> ServingSignature:
    """Loads a SavedModel with `tf.saved_model.load` and returns its `signature`.

    It runs the SavedModel's restore function: call `check_saved_model` first
    on a SavedModel from someone else.

    Example:

    >>> import keras_logits, pathlib
    >>> reference = pathlib.Path(keras_logits.__file__).parents[1] / "saved_models" / "digits_cnn"
    >>> served = load_saved_model(reference)
    >>> served.inputs, served.outputs
    ({'image': ((None, 8, 8, 1), 'float32')}, ('class_id', 'logits', 'probabilities'))
    """
    import tensorflow as tf

    saved_model = tf.saved_model.load(str(path))
    function = saved_model.signatures[signature]
    inputs = {name: (tuple(spec.shape.as_list()), spec.dtype.name)
              for name, spec in function.structured_input_signature[1].items()}
    return ServingSignature(inputs, tuple(sorted(function.structured_outputs)), function, saved_model)


def call_saved_model(signature: ServingSignature, inputs: dict) -> dict:
    """Runs `signature` on NumPy arrays keyed by input name; returns its outputs as NumPy arrays by name.

    Arrays go in with their own dtype, as a consumer's would (NumPy str arrays
    as strings): a dtype the signature does not take is refused by TensorFlow,
    not converted.

    Example:

    >>> import keras_logits, pathlib, numpy as np
    >>> reference = pathlib.Path(keras_logits.__file__).parents[1] / "saved_models" / "digits_cnn"
    >>> outputs = call_saved_model(load_saved_model(reference), {"image": np.zeros((2, 8, 8, 1), "float32")})
    >>> outputs["probabilities"].shape, outputs["class_id"].dtype
    ((2, 10), dtype('int64'))
    """
    import tensorflow as tf

    outputs = signature.function(**{name: tf.constant(value) for name, value in inputs.items()})
    return {name: value.numpy() for name, value in outputs.items()}

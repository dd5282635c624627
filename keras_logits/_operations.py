"""What one operation of a Keras graph computes, for the walk from an output back to its head.

`kind_of` sorts an operation (a head, plain logits, a layer that only moves values, a layer
nobody can see into, ...); `activation_of` and `activation_name` say which activation it
applies; `fused_layer` finds the Dense/Conv whose own activation is the output's. Reads only
public attributes of layers; `_graph` reads the graph's private ones.
"""

from __future__ import annotations

import keras

from keras_logits._activations import SUPPORTED_ACTIVATIONS
from keras_logits._graph import is_graph_model
from keras_logits.layers import Logits, LogitsHead, MaskedLogits, PreActivation, Temperature


# Layers that only move values around, or are the identity at inference (noise and dropout only in training;
# ActivityRegularization adds a loss on its input): logits stay logits when they pass through.
_SHAPE_ONLY_LAYERS = (
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Dropout,
    keras.layers.Identity,
    keras.layers.Permute,
    keras.layers.ActivityRegularization,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
)

# Their `activation` is the cell's, applied inside the recurrence: never an output activation.
_RECURRENT_LAYERS = (keras.layers.RNN, keras.layers.Bidirectional)

_ACTIVATION_FUNCTIONS = {
    "softmax": keras.activations.softmax,
    "sigmoid": keras.activations.sigmoid,
}


class NoHead(Exception):
    """One output has no classification head; the message says why."""


def kind_of(operation, index) -> str:
    """What an operation's output is, for the walk and the diagnosis of outputs that are not heads.

    `"input"`, `"nested"` (a graph model), `"shape_only"`, `"logits_preserving"`
    (logits in, logits out), `"linear"` (a weighted layer without activation:
    its output may be logits), `"activation"` (softmax/sigmoid: a head),
    `"other_activation"` (relu, ...), `"recurrent"`, `"opaque"` (Lambda, custom
    layers, subclassed models: the package cannot see what they compute) or
    `"builtin"` (any other Keras layer or op).

    Example:

    >>> import keras
    >>> [kind_of(layer, 0) for layer in (keras.layers.Dense(3, activation="softmax"), keras.layers.Dense(3),
    ...                                  keras.layers.Flatten(), keras.layers.Lambda(lambda x: x))]
    ['activation', 'linear', 'shape_only', 'opaque']
    """
    if operation is None or isinstance(operation, keras.layers.InputLayer):
        return "input"
    if isinstance(operation, keras.Model):
        return "nested" if is_graph_model(operation) else "opaque"
    if isinstance(operation, _SHAPE_ONLY_LAYERS):
        return "shape_only"
    if isinstance(operation, PreActivation):
        return "linear"
    if isinstance(operation, (Temperature, MaskedLogits, Logits)):
        return "logits_preserving"
    if isinstance(operation, LogitsHead):
        return "logits_preserving" if index == 0 else "activation"  # outputs flattened: logits, probabilities
    if isinstance(operation, _RECURRENT_LAYERS) or _wrapped(operation, _RECURRENT_LAYERS):
        return "recurrent"
    if isinstance(operation, keras.layers.Softmax) or _is_activation_op(operation):
        return "activation"
    fused = fused_layer(operation)
    if fused is not None or isinstance(operation, keras.layers.Activation):
        name = activation_name((fused or operation).activation)
        if name == "linear":
            return "linear" if fused is not None else "logits_preserving"
        return "activation" if name in SUPPORTED_ACTIVATIONS else "other_activation"
    if isinstance(operation, keras.layers.Lambda) or not type(operation).__module__.startswith("keras."):
        return "opaque"
    if hasattr(operation, "activation") or isinstance(operation, keras.layers.Wrapper):
        return "opaque"  # a layer with its own activation (or wrapping one) the package does not know
    return "builtin"


def _wrapped(operation, types) -> bool:
    return isinstance(operation, keras.layers.Wrapper) and isinstance(operation.layer, types)


def fused_layer(operation):
    """The Dense/Conv whose `activation` is `operation`'s output activation (inside TimeDistributed), or None.

    Exactly the layers `PreActivation` can split: Keras' own call() applies the
    activation last. Any other layer with an `activation` attribute is opaque.
    """
    if not PreActivation.supports(operation):
        return None
    while isinstance(operation, keras.layers.TimeDistributed):
        operation = operation.layer
    return operation


def _is_activation_op(operation) -> bool:
    module = type(operation).__module__
    return module.startswith("keras.src.ops.nn") and type(operation).__name__ in ("Softmax", "Sigmoid")


def activation_of(operation, index=0):
    """(activation name, axis, fused) of an `"activation"`/`"other_activation"` operation."""
    if isinstance(operation, LogitsHead):
        return operation.activation, operation.axis, False
    if isinstance(operation, keras.layers.Softmax):
        return "softmax", _single_axis(operation.axis), False
    if _is_activation_op(operation):
        return type(operation).__name__.lower(), _single_axis(getattr(operation, "axis", -1)), False
    fused = fused_layer(operation)
    return activation_name((fused or operation).activation), -1, fused is not None


def describe(operation) -> str:
    return f"'{operation.name}' ({type(operation).__name__})"


_FRAMEWORK_MODULES = ("keras", "tensorflow", "jax", "torch")
_ALIASES = {"softmax_v2": "softmax"}  # tf.nn.softmax


def activation_name(function) -> str:
    """'softmax', 'sigmoid', 'linear', another Keras name, or a qualified name for custom callables."""
    for name, known in _ACTIVATION_FUNCTIONS.items():
        if function is known:
            return name
    if function is keras.activations.linear or function is None:
        return "linear"
    raw = getattr(function, "__name__", None) or type(function).__name__
    module = getattr(function, "__module__", None) or ""
    if module.split(".")[0] in _FRAMEWORK_MODULES:
        # tf.nn.softmax, tf.math.sigmoid, jax.nn.sigmoid, "relu", ...: the framework's own function.
        return _ALIASES.get(raw, raw)
    # A user's callable is never taken for softmax/sigmoid, whatever it is called.
    return f"{module}.{raw}" if module else raw


def _single_axis(axis) -> int:
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise NoHead(f"softmax over several axes {tuple(axis)} is not a per-class head")
        return int(axis[0])
    return int(axis)


def size_of(tensor, axis):
    shape = tensor.shape
    if not shape:
        return None
    return shape[axis]

"""Locate the classification head of a Keras model.

This is the only module that reads Keras graph internals (output tensors, their
producing operations and inbound nodes, nested models). Everything downstream
consumes the `Head` it returns.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import keras

from keras_logits._activations import SUPPORTED_ACTIVATIONS, check_activation

# Layers that only move values around: logits stay logits when they pass through.
_SHAPE_ONLY_LAYERS = (
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Dropout,
    keras.layers.Identity,
    keras.layers.Permute,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
)

_ACTIVATION_FUNCTIONS = {
    "softmax": keras.activations.softmax,
    "sigmoid": keras.activations.sigmoid,
}


@dataclasses.dataclass(frozen=True)
class Step:
    """One operation on the way from a model output back to its head.

    `kind` is `"shape_only"` (a layer such as Flatten that the logits pass
    through), `"nested"` (a submodel whose output is followed inside), or the
    terminal step: `"fused"` (a Dense/Conv whose own `activation` is the
    softmax/sigmoid), `"separate"` (an `Activation`/`Softmax` layer or op) or
    `"given"` (the output already is logits; the activation was passed by the
    caller).
    """

    kind: str
    operation: Any
    node: Any

    @property
    def input_tensor(self):
        return self.node.input_tensors[0]

    @property
    def output_tensor(self):
        return self.node.output_tensors[0]

    def replay(self, tensor):
        """Calls this step's operation on `tensor` with the original keyword arguments."""
        return self.operation(tensor, **self.node.arguments.kwargs)


@dataclasses.dataclass(frozen=True)
class Head:
    """The classification head of a model: where softmax/sigmoid is applied.

    Attributes:
        layer: The layer (or op) that applies the activation: the Dense/Conv
            itself when the activation is fused into it, else the separate
            `Activation`/`Softmax` layer. When the activation was passed to
            `find_head(..., activation=...)`, the layer producing the logits.
        activation: `"softmax"` or `"sigmoid"`.
        fused: True when the activation is the `activation=` argument of a
            Dense / EinsumDense / ConvND layer, False for a separate layer.
        axis: The class axis the activation normalises over.
        num_classes: Size of the class axis (1 for a single-unit binary sigmoid);
            None when the shape is dynamic.
        path: Names of the nested models leading to `layer`, outermost first;
            empty when the head is in the model itself.
        output_name: Name of the model output this head produces.
        applied_by_model: False when the model outputs logits and the
            activation comes from the caller.

    Example:

    >>> import keras, keras_logits
    >>> inputs = keras.Input((4,))
    >>> scores = keras.layers.Dense(3, name="scores")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Activation("sigmoid", name="tags")(scores))
    >>> head = keras_logits.find_head(model)
    >>> head.layer.name, head.fused, head.logits_layer.name
    ('tags', False, 'scores')
    """

    layer: Any
    activation: str
    fused: bool
    axis: int
    num_classes: Optional[int]
    path: tuple
    output_name: str
    applied_by_model: bool = True
    route: tuple = dataclasses.field(default=(), repr=False, compare=False)

    @property
    def logits_layer(self):
        """The layer whose output (without activation) is the logits."""
        if self.fused or not self.applied_by_model:
            return self.layer
        return _producer_skipping_shape_only(self.route[-1].input_tensor)[0]

    def describe(self) -> str:
        """One line for people: layer, activation, fused or separate, classes, path."""
        where = "/".join(self.path + (self.layer.name,))
        kind = "fused into" if self.fused else "separate layer"
        if not self.applied_by_model:
            kind = "given by caller after"
        return (
            f"{self.activation} ({kind} {type(self.layer).__name__} '{where}'), "
            f"{self.num_classes} classes on axis {self.axis}, output '{self.output_name}'"
        )


def find_head(model, *, output: Optional[str] = None, activation: Optional[str] = None) -> Head:
    """Finds the layer that turns logits into probabilities in `model`.

    Walks back from the model output through shape-only layers (Flatten,
    Reshape, Dropout, Identity, ...) and into nested models until it reaches the
    softmax/sigmoid, fused into a Dense/Conv layer or applied by a separate
    `Activation`/`Softmax` layer.

    Args:
        model: A built functional or Sequential Keras model.
        output: Name of the output to use when the model has several
            classification outputs.
        activation: `"softmax"` or `"sigmoid"` when the model outputs logits
            (no activation at the end); the head then is the logits layer.

    Returns:
        A `Head`.

    Example:

    >>> import keras, keras_logits
    >>> model = keras.Sequential([keras.Input((4,)),
    ...                           keras.layers.Dense(3, activation="softmax", name="cls")])
    >>> head = keras_logits.find_head(model)
    >>> (head.layer.name, head.activation, head.fused, head.num_classes)
    ('cls', 'softmax', True, 3)
    """
    heads = find_heads(model, activation=activation)
    if output is not None:
        if output not in heads:
            raise ValueError(
                f"Model '{model.name}' has no classification output named '{output}'. "
                f"Its classification outputs are {sorted(heads)}; pass one of those."
            )
        return heads[output]
    if len(heads) > 1:
        raise ValueError(
            f"Model '{model.name}' has {len(heads)} classification outputs {sorted(heads)}. "
            "Pick one with output=<name> (or head=<name> in expose())."
        )
    return next(iter(heads.values()))


def find_heads(model, *, activation: Optional[str] = None) -> dict:
    """Finds the classification head of every output of `model` that has one.

    Returns:
        A dict mapping output name to `Head`, in output order. Outputs without a
        classification head are left out; a model with none raises ValueError.

    Example:

    >>> import keras, keras_logits
    >>> inputs = keras.Input((4,))
    >>> model = keras.Model(inputs, {
    ...     "kind": keras.layers.Dense(3, activation="softmax")(inputs),
    ...     "tags": keras.layers.Dense(5, activation="sigmoid")(inputs)})
    >>> {name: head.activation for name, head in keras_logits.find_heads(model).items()}
    {'kind': 'softmax', 'tags': 'sigmoid'}
    """
    if activation is not None:
        check_activation(activation)
    outputs = model_outputs(model)
    heads, problems = {}, []
    for name, tensor in outputs.items():
        try:
            heads[name] = _head_of(tensor, name, activation, path=())
        except _NoHead as problem:
            problems.append(problem)
    if not heads:
        if len(problems) == 1:
            raise ValueError(f"Cannot find a classification head in model '{model.name}': {problems[0]}")
        raise ValueError(
            f"Cannot find a classification head in model '{model.name}': none of its "
            f"{len(problems)} outputs ends in softmax or sigmoid ("
            + "; ".join(str(p) for p in problems)
            + ")."
        )
    return heads


def output_activations(model) -> dict:
    """`{output name: (activation, size of the last axis)}` for every output of a graph model.

    The activation is the one the output ends in, looking through shape-only
    layers and nested models: `"softmax"`, `"sigmoid"`, another Keras name
    (`"relu"`), `"linear"` for a layer known to output raw scores (Dense/Conv
    without activation, `PreActivation`, `Temperature`, the logits of
    `LogitsHead`), or None when the producing layer does not say (Add,
    Concatenate, custom layers).

    Example:

    >>> import keras, keras_logits
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> list(output_activations(model).values())
    [('linear', 3)]
    """
    activations = {}
    for name, tensor in model_outputs(model).items():
        size = _size(tensor, -1)
        operation, node, tensor_index = _operation_of(tensor)
        while isinstance(operation, (keras.Model, *_SHAPE_ONLY_LAYERS)):
            if isinstance(operation, keras.Model):
                tensor = list(operation.outputs)[tensor_index]
            else:
                tensor = node.input_tensors[0]
            operation, node, tensor_index = _operation_of(tensor)
        activations[name] = (_output_activation(operation, tensor_index), size)
    return activations


def _output_activation(operation, tensor_index) -> Optional[str]:
    if operation is None or isinstance(operation, keras.layers.InputLayer):
        return None
    declared = getattr(operation, "activation", None)
    if isinstance(declared, str) and declared in SUPPORTED_ACTIVATIONS:  # LogitsHead: logits, probabilities
        return "linear" if tensor_index == 0 else declared
    if type(operation).__name__ in ("PreActivation", "Temperature"):  # by name: layers imports this module
        return "linear"
    try:
        activation, _, _ = _activation_of(operation)
    except _NoHead:
        return None
    if activation is not None:
        return activation
    return "linear" if declared is not None else None


def model_outputs(model) -> dict:
    """Returns `{output_name: symbolic output tensor}` of a functional/Sequential model."""
    _check_is_graph_model(model)
    structure = getattr(model, "_outputs_struct", None)
    if isinstance(structure, dict):
        return dict(structure)
    tensors = list(model.outputs)
    names = getattr(model, "output_names", None)
    if not names or len(names) != len(tensors):
        names = [t._keras_history.operation.name for t in tensors]
    return dict(zip(names, tensors))


def model_inputs(model):
    """Returns the symbolic inputs of a graph model in the structure it is called with."""
    inputs = model.inputs
    structure = getattr(model, "_inputs_struct", None)
    if structure is not None and not isinstance(structure, (list, tuple)):
        return structure
    return inputs[0] if len(inputs) == 1 else list(inputs)


def _check_is_graph_model(model) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a keras.Model, got {type(model).__name__}. Wrap a layer stack in "
            "keras.Sequential or build a functional model first."
        )
    if isinstance(model, keras.Sequential):
        try:
            model.inputs
        except (AttributeError, ValueError):
            raise ValueError(
                f"Sequential model '{model.name}' has not been built, so it has no graph to "
                "read the head from. Start it with keras.Input(shape=...) or call "
                "model.build((None, *input_shape)) first."
            ) from None
        return
    if getattr(model, "outputs", None) is None:
        raise ValueError(
            f"Model '{model.name}' is a subclassed keras.Model ({type(model).__name__}): its "
            "call() is Python code, so its graph cannot be read or rebuilt. Return both "
            "outputs from call() instead: `return keras_logits.layers.LogitsHead('softmax')"
            "(logits)` where `logits` is the tensor before the activation."
        )


class _NoHead(Exception):
    """One output has no classification head; the message says why."""


def _operation_of(tensor):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, None, 0
    operation, node_index, tensor_index = history
    return operation, operation._inbound_nodes[node_index], tensor_index


def _describe(operation) -> str:
    return f"'{operation.name}' ({type(operation).__name__})"


def _head_of(tensor, output_name, given_activation, path, route=()):
    """Walks back from `tensor` to the head; raises _NoHead with the reason."""
    operation, node, tensor_index = _operation_of(tensor)
    if operation is None or isinstance(operation, keras.layers.InputLayer):
        if given_activation is not None and operation is not None:
            raise _NoHead(
                f"output '{output_name}' is the model input itself; there is no logits layer"
            )
        raise _NoHead(f"output '{output_name}' is a model input, not a classifier output")

    if isinstance(operation, keras.Model):
        inner = list(operation.outputs)[tensor_index]
        step = Step("nested", operation, node)
        return _head_of(inner, output_name, given_activation, path + (operation.name,), route + (step,))

    if isinstance(operation, _SHAPE_ONLY_LAYERS):
        step = Step("shape_only", operation, node)
        return _head_of(node.input_tensors[0], output_name, given_activation, path, route + (step,))

    activation, axis, fused = _activation_of(operation)
    if activation is None:
        if given_activation is not None:
            step = Step("given", operation, node)
            return Head(
                layer=operation,
                activation=given_activation,
                fused=False,
                axis=-1,
                num_classes=_size(tensor, -1),
                path=path,
                output_name=output_name,
                applied_by_model=False,
                route=route + (step,),
            )
        raise _NoHead(
            f"output '{output_name}' comes from layer {_describe(operation)}, which has no "
            "activation. If that output already is logits, pass activation='softmax' "
            "(one class per sample) or activation='sigmoid' (binary / multi-label)"
        )
    if activation not in SUPPORTED_ACTIVATIONS:
        raise _NoHead(
            f"output '{output_name}' comes from layer {_describe(operation)} with activation "
            f"'{activation}', which is not a classification activation. keras_logits supports "
            "softmax and sigmoid heads; if the tensor before it is what you want, end the "
            "model there and pass activation='softmax' or 'sigmoid'"
        )
    if given_activation is not None:
        raise _NoHead(
            f"output '{output_name}' already applies {activation} in layer "
            f"{_describe(operation)}; leave out activation= and the logits are found for you"
        )
    step = Step("fused" if fused else "separate", operation, node)
    return Head(
        layer=operation,
        activation=activation,
        fused=fused,
        axis=axis,
        num_classes=_size(node.output_tensors[0], axis),
        path=path,
        output_name=output_name,
        route=route + (step,),
    )


def _activation_of(operation):
    """Returns (activation name or None, axis, fused) for an operation."""
    if isinstance(operation, keras.layers.Softmax):
        return "softmax", _single_axis(operation.axis), False
    module = type(operation).__module__
    if module.startswith("keras.src.ops.nn") and type(operation).__name__ in ("Softmax", "Sigmoid"):
        axis = getattr(operation, "axis", -1)
        return type(operation).__name__.lower(), _single_axis(axis), False
    function = getattr(operation, "activation", None)
    if function is None:
        return None, -1, False
    name = _activation_name(function)
    if name == "linear":
        return None, -1, False
    fused = not isinstance(operation, keras.layers.Activation)
    return name, -1, fused


_FRAMEWORK_MODULES = ("keras", "tensorflow", "jax", "torch")
_ALIASES = {"softmax_v2": "softmax"}  # tf.nn.softmax


def _activation_name(function) -> str:
    """'softmax', 'sigmoid', 'linear', another Keras name, or a qualified name for custom callables."""
    for name, known in _ACTIVATION_FUNCTIONS.items():
        if function is known:
            return name
    if function is keras.activations.linear:
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
            raise _NoHead(f"softmax over several axes {tuple(axis)} is not a per-class head")
        return int(axis[0])
    return int(axis)


def _size(tensor, axis):
    shape = tensor.shape
    if not shape:
        return None
    return shape[axis]


def _producer_skipping_shape_only(tensor):
    """(operation, node) that computed `tensor`, looking through shape-only layers."""
    operation, node, _ = _operation_of(tensor)
    while isinstance(operation, _SHAPE_ONLY_LAYERS):
        operation, node, _ = _operation_of(node.input_tensors[0])
    return operation, node


def features_tensor(tensor):
    """The tensor that feeds the layer producing `tensor` (skipping shape-only layers)."""
    operation, node = _producer_skipping_shape_only(tensor)
    if operation is None or isinstance(operation, keras.layers.InputLayer):
        return None
    inputs = node.input_tensors
    return inputs[0] if len(inputs) == 1 else None

"""Locate the classification head of a Keras model.

This is the only module that reads Keras graph internals (output tensors, their
producing operations and inbound nodes, nested models). Everything downstream
consumes the `Head` it returns.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Any, Optional

import keras

from keras_logits._activations import SUPPORTED_ACTIVATIONS, check_activation
from keras_logits.layers import LogitsHead, MaskedLogits, PreActivation, Temperature

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

# Their `activation` is the cell's, applied inside the recurrence: never an output activation.
_RECURRENT_LAYERS = (keras.layers.RNN, keras.layers.Bidirectional)

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
    softmax/sigmoid), `"separate"` (an `Activation`/`Softmax` layer or op,
    including the one `expose` splits off), `"logits_head"` (a `LogitsHead`)
    or `"given"` (the output already is logits; the activation was passed by
    the caller).
    """

    kind: str
    operation: Any
    node: Any
    index: int = 0

    @property
    def input_tensor(self):
        return self.node.input_tensors[0]

    @property
    def output_tensor(self):
        return self.node.output_tensors[self.index]

    def replay(self, tensor):
        """Calls this step's operation on `tensor` with the original other arguments (a mask, ...)."""
        return self.operation(tensor, *self.node.arguments.args[1:], **self.node.arguments.kwargs)


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
            Dense / EinsumDense / ConvND layer (or one of these inside
            `TimeDistributed`), False for a separate layer. An exposed model
            describes its head as the original did: the activation `expose`
            split off a fused layer is reported as that layer, fused.
        axis: The class axis of the output: always -1, the last axis (heads
            whose classes end up elsewhere are refused).
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
        return _walk(self.route[-1].input_tensor, into_models=False, through_logits=True).operation

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
    `Activation`/`Softmax` layer. The package's own layers are known by type: a
    `LogitsHead`'s `"probabilities"` output, and the activation `expose` split
    off a `PreActivation` (described as the original fused layer).

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
    heads, problems = _heads_and_problems(model, activation)
    if output is not None and output in problems:
        raise ValueError(
            f"Model '{model.name}' has no classification output named '{output}' (its classification outputs "
            f"are {sorted(heads)}): {problems[output]}."
        )
    if not heads:
        raise _no_head_error(model, problems)
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
            f"{CHOOSE_A_HEAD}"
        )
    return next(iter(heads.values()))


# Every place that takes a choice of head; the others add their parameter under these names.
CHOOSE_A_HEAD = (
    "Pick one with find_head(model, output=<name>), head=<name> in expose(), ensure_exposed(), "
    "export() and LogitsLogger(), or --head <name> on the keras-logits command line."
)


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
    heads, problems = _heads_and_problems(model, activation)
    if not heads:
        raise _no_head_error(model, problems)
    return heads


def _heads_and_problems(model, activation):
    """`({output: Head}, {output: why it has none})` from one walk per output."""
    _check_is_graph_model(model)
    if activation is not None:
        check_activation(activation)
    outputs = model_outputs(model)
    outputs_by_id = {id(tensor): name for name, tensor in outputs.items()}
    heads, problems = {}, {}
    for name, tensor in outputs.items():
        try:
            heads[name] = _head_of(tensor, name, activation, outputs_by_id)
        except _NoHead as problem:
            problems[name] = problem
    return heads, problems


def _no_head_error(model, problems) -> ValueError:
    if len(problems) == 1:
        return ValueError(f"Cannot find a classification head in model '{model.name}': {next(iter(problems.values()))}")
    return ValueError(
        f"Cannot find a classification head in model '{model.name}': none of its "
        f"{len(problems)} outputs ends in softmax or sigmoid ("
        + "; ".join(str(p) for p in problems.values())
        + ")."
    )


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
        found = _walk(tensor)
        kind = _kind(found.operation, found.index)
        if kind in ("activation", "other_activation"):
            try:
                activation = _activation_of(found.operation, found.index)[0]
            except _NoHead:  # softmax over several axes
                activation = "softmax"
        else:
            activation = "linear" if kind in ("linear", "logits_preserving") else None
        activations[name] = (activation, _size(tensor, -1))
    return activations


def outputs_from_probabilities(model) -> dict:
    """`{output name: [upstream softmax/sigmoid layers]}` for outputs computed from probabilities.

    An output that is not itself a head, but is computed from a softmax or
    sigmoid further up (an ensemble average, a rescaling, a product with class
    priors), is neither logits nor the model's probabilities.

    Example:

    >>> import keras
    >>> inputs = keras.Input((4,))
    >>> probabilities = keras.layers.Dense(3, activation="softmax", name="cls")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Rescaling(0.5, name="half")(probabilities))
    >>> outputs_from_probabilities(model)
    {'half': ["'cls' (Dense, softmax)"]}
    """
    found = {}
    for name, tensor in model_outputs(model).items():
        producer = _walk(tensor)
        if _kind(producer.operation, producer.index) in ("activation", "input", "recurrent"):
            continue
        upstream, _ = _search_upstream(producer.tensor)
        if upstream:
            found[name] = [_describe_upstream(item) for item in upstream]
    return found


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
        if any(cls.__module__.split(".")[0] == "tf_keras" for cls in type(model).__mro__):
            raise TypeError(
                f"Model '{getattr(model, 'name', '?')}' is a Keras 2 (tf_keras) {type(model).__name__}; "
                "keras_logits works on Keras 3 models. Save it as .h5 (model.save('model.h5')) and load "
                "that with Keras 3 (keras.saving.load_model('model.h5')), or pass the .h5 file to the "
                "keras-logits command line."
            )
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
    if not _is_graph_model(model):
        raise ValueError(
            f"Model '{model.name}' is a subclassed keras.Model ({type(model).__name__}): its "
            "call() is Python code, so its graph cannot be read or rebuilt. Return both "
            "outputs from call() instead: `return keras_logits.layers.LogitsHead('softmax')"
            "(logits)` where `logits` is the tensor before the activation."
        )


def _is_graph_model(model) -> bool:
    try:
        return getattr(model, "outputs", None) is not None
    except (AttributeError, ValueError):
        return False


class _NoHead(Exception):
    """One output has no classification head; the message says why."""


# ---- the walk ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Producer:
    """Where a walk back stopped: the operation that computed `tensor`, and the steps to it."""

    operation: Any
    node: Any
    index: int
    tensor: Any
    path: tuple
    route: tuple


def _operation_of(tensor):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, None, 0
    operation, node_index, tensor_index = history
    return operation, operation._inbound_nodes[node_index], tensor_index


def _walk(tensor, *, into_models: bool = True, through_logits: bool = False, path=(), route=()) -> _Producer:
    """THE walk: follows `tensor` back to the operation that computed it.

    It passes through shape-only layers, into nested graph models (unless
    `into_models=False`) and, with `through_logits=True`, through the layers
    that take logits to logits (`Temperature`, `MaskedLogits`, the logits of a
    `LogitsHead`, a linear `Activation`), recording each step.
    """
    while True:
        operation, node, index = _operation_of(tensor)
        kind = _kind(operation, index)
        if kind == "nested" and into_models:
            route += (Step("nested", operation, node, index),)
            path += (_model_name_in_path(operation),)
            tensor = list(operation.outputs)[index]
        elif kind == "shape_only" or (kind == "logits_preserving" and through_logits):
            route += (Step(kind, operation, node, index),)
            tensor = node.input_tensors[0]
        else:
            return _Producer(operation, node, index, tensor, path, route)


def _model_name_in_path(model) -> str:
    """A nested model's name; an exposed copy of a nested model (`expose` builds one) by its original's."""
    structure = getattr(model, "_outputs_struct", None)
    if isinstance(structure, dict) and {"logits", "probabilities"} <= set(structure):
        return re.sub(r"_exposed(_\d+)?$", "", model.name)
    return model.name


def _kind(operation, index) -> str:
    """What an operation's output is, for the walk and the diagnosis of outputs that are not heads.

    `"input"`, `"nested"` (a graph model), `"shape_only"`, `"logits_preserving"`
    (logits in, logits out), `"linear"` (a weighted layer without activation:
    its output may be logits), `"activation"` (softmax/sigmoid: a head),
    `"other_activation"` (relu, ...), `"recurrent"`, `"opaque"` (Lambda, custom
    layers, subclassed models: the package cannot see what they compute) or
    `"builtin"` (any other Keras layer or op).
    """
    if operation is None or isinstance(operation, keras.layers.InputLayer):
        return "input"
    if isinstance(operation, keras.Model):
        return "nested" if _is_graph_model(operation) else "opaque"
    if isinstance(operation, _SHAPE_ONLY_LAYERS):
        return "shape_only"
    if isinstance(operation, PreActivation):
        return "linear"
    if isinstance(operation, (Temperature, MaskedLogits)):
        return "logits_preserving"
    if isinstance(operation, LogitsHead):
        return "logits_preserving" if index == 0 else "activation"  # outputs flattened: logits, probabilities
    if isinstance(operation, _RECURRENT_LAYERS) or _wrapped(operation, _RECURRENT_LAYERS):
        return "recurrent"
    if isinstance(operation, keras.layers.Softmax) or _is_activation_op(operation):
        return "activation"
    fused = _fused_layer(operation)
    if fused is not None or isinstance(operation, keras.layers.Activation):
        name = _activation_name((fused or operation).activation)
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


def _fused_layer(operation):
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


def _activation_of(operation, index=0):
    """(activation name, axis, fused) of an `"activation"`/`"other_activation"` operation."""
    if isinstance(operation, LogitsHead):
        return operation.activation, operation.axis, False
    if isinstance(operation, keras.layers.Softmax):
        return "softmax", _single_axis(operation.axis), False
    if _is_activation_op(operation):
        return type(operation).__name__.lower(), _single_axis(getattr(operation, "axis", -1)), False
    fused = _fused_layer(operation)
    return _activation_name((fused or operation).activation), -1, fused is not None


def _describe(operation) -> str:
    return f"'{operation.name}' ({type(operation).__name__})"


# ---- one output: a head, or why not -----------------------------------------------------


def _head_of(tensor, output_name, given_activation, outputs_by_id):
    """The head of one output; raises _NoHead with the reason and the way forward."""
    found = _walk(tensor)
    operation = found.operation
    kind = _kind(operation, found.index)
    if kind == "input":
        if given_activation is not None and operation is not None:
            raise _NoHead(f"output '{output_name}' is the model input itself; there is no logits layer")
        raise _NoHead(f"output '{output_name}' is a model input, not a classifier output")
    if kind == "recurrent":
        raise _NoHead(
            f"output '{output_name}' comes from the recurrent layer {_describe(operation)}, whose "
            "activation is the cell's internal activation, not a classification head. End the model in "
            "Dense(num_classes, activation='softmax'), or TimeDistributed(Dense(num_classes, "
            "activation='softmax')) for one class per time step"
        )
    if kind == "other_activation":
        activation = _activation_of(operation, found.index)[0]
        raise _NoHead(
            f"output '{output_name}' comes from layer {_describe(operation)} with activation "
            f"'{activation}', which is not a classification activation. keras_logits supports "
            "softmax and sigmoid heads; if the tensor before it is what you want, end the "
            "model there and pass activation='softmax' or 'sigmoid'"
        )
    if kind == "activation":
        if given_activation is not None:
            activation = _activation_of(operation, found.index)[0]
            raise _NoHead(
                f"output '{output_name}' already applies {activation} in layer "
                f"{_describe(operation)}; leave out activation= and the logits are found for you"
            )
        return _activation_head(found, output_name)
    return _given_head(found, output_name, given_activation, outputs_by_id)


def _activation_head(found: _Producer, output_name: str) -> Head:
    operation, node = found.operation, found.node
    activation, axis, fused = _activation_of(operation, found.index)
    if fused:
        kind, layer = "fused", operation
    else:
        kind, layer = ("logits_head" if isinstance(operation, LogitsHead) else "separate"), operation
        logits = node.input_tensors[0]
        split_off = _walk(logits, into_models=False, through_logits=True)
        wrapped = getattr(split_off.operation, "layer", None)
        applied_before = [step.operation for step in split_off.route
                          if isinstance(step.operation, LogitsHead) and step.operation.activation == activation]
        if isinstance(split_off.operation, PreActivation) and _output_activation_name(wrapped) == activation:
            layer, fused = wrapped, True  # expose() split this activation off `wrapped`: describe it as fused
        elif applied_before:
            layer = applied_before[0]  # expose(temperature=) re-applied a LogitsHead's activation to scaled logits
        else:
            upstream, _ = _search_upstream(logits)
            if upstream:
                raise _NoHead(
                    f"output '{output_name}' applies {activation} in layer {_describe(operation)} to values "
                    f"computed from {_upstream_list(upstream)} further up: they are probabilities, not "
                    "logits. End the model at the first activation, or remove one of them"
                )
    head_output = node.output_tensors[found.index]
    num_classes = _class_axis_at_output(found, head_output, axis, activation, output_name, layer)
    return Head(
        layer=layer,
        activation=activation,
        fused=fused,
        axis=-1,
        num_classes=num_classes,
        path=found.path,
        output_name=output_name,
        route=found.route + (Step(kind, operation, node, found.index),),
    )


def _output_activation_name(layer) -> Optional[str]:
    fused = _fused_layer(layer)
    return None if fused is None else _activation_name(fused.activation)


def _given_head(found: _Producer, output_name: str, given_activation: Optional[str], outputs_by_id) -> Head:
    """An output that is not a head: logits the caller vouches for, or a refusal saying why not."""
    operation = found.operation
    upstream, opaque = _search_upstream(found.tensor, outputs_by_id)
    if upstream:
        members = [item for item in upstream if item.output_name is not None]
        way = (f"pick that member's own output with head=<one of {sorted({m.output_name for m in members})}>, "
               if members else "")
        raise _NoHead(
            f"output '{output_name}' comes from layer {_describe(operation)}, which is computed from "
            f"{_upstream_list(upstream)} further up: its values are neither logits nor the model's "
            f"probabilities, and no activation= makes them so. To get logits, {way}expose the member "
            "models one by one (keras_logits.expose(member)), or end the model before the combination"
        )
    if opaque:
        names = ", ".join(_describe(layer) for layer in opaque)
        if given_activation is None:
            raise _NoHead(
                f"output '{output_name}' comes through {names}, which keras_logits cannot see into: it cannot "
                "tell whether the output is logits or probabilities. Rebuild that part from Keras layers, or "
                "end the model at a Dense/Conv layer without activation; only if you know the output is "
                "logits (no softmax/sigmoid inside), pass activation='softmax' or 'sigmoid'"
            )
        warnings.warn(
            f"Output '{output_name}' comes through {names}, which keras_logits cannot see into: it takes "
            f"your word (activation={given_activation!r}) that the output is logits and cannot check it.",
            UserWarning,
            stacklevel=4,
        )
    elif given_activation is None:
        raise _NoHead(
            f"output '{output_name}' comes from layer {_describe(operation)}, which has no "
            "activation. If that output already is logits, pass activation='softmax' "
            "(one class per sample) or activation='sigmoid' (binary / multi-label)"
        )
    return Head(
        layer=operation,
        activation=given_activation,
        fused=False,
        axis=-1,
        num_classes=_size(found.tensor, -1),
        path=found.path,
        output_name=output_name,
        applied_by_model=False,
        route=found.route + (Step("given", operation, found.node, found.index),),
    )


# ---- what lies upstream of a tensor -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Upstream:
    operation: Any
    path: tuple
    activation: str
    output_name: Optional[str] = None  # set when the activation's tensor is also a model output


def _search_upstream(tensor, model_outputs_by_id=None):
    """(softmax/sigmoid producers, opaque layers) among the ancestors of `tensor`.

    The search does not look past weighted layers (Dense/Conv with any
    activation, `PreActivation`, recurrent layers): a softmax before a Dense is a
    feature, not the output's probabilities. It enters nested models and
    leaves them through the inputs they were called with. A producer whose
    probabilities are themselves a model output (given `{id(tensor): name}`)
    carries that output's name.
    """
    outputs_by_id = model_outputs_by_id or {}
    upstream, opaque, seen = [], [], set()
    pending = [(tensor, (), {}, None)]
    while pending:
        current, path, exits, via = pending.pop()
        via = outputs_by_id.get(id(current), via)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if id(current) in exits:
            outer, outer_path, outer_exits = exits[id(current)]
            pending.append((outer, outer_path, outer_exits, None))
            continue
        operation, node, index = _operation_of(current)
        kind = _kind(operation, index)
        if kind == "activation":
            try:
                activation = _activation_of(operation, index)[0]
            except _NoHead:
                activation = "softmax"  # over several axes: still probabilities
            upstream.append(_Upstream(operation, path, activation, via))
        elif kind == "nested":
            inner_inputs, outer_inputs = list(operation.inputs), list(node.input_tensors)
            inner_exits = dict(exits)
            for position, inner in enumerate(inner_inputs):
                # Called with as many tensors as it has inputs: map each back; else any may lead anywhere.
                targets = [outer_inputs[position]] if len(inner_inputs) == len(outer_inputs) else outer_inputs
                inner_exits[id(inner)] = (targets[0], path, exits)
                pending.extend((extra, path, exits, None) for extra in targets[1:])
            pending.append((list(operation.outputs)[index], path + (operation.name,), inner_exits, via))
        elif kind in ("shape_only", "logits_preserving", "builtin", "opaque"):
            if kind == "opaque":
                opaque.append(operation)
            # Only shape-only layers keep "this is that model output's probabilities".
            keep = via if kind == "shape_only" else None
            pending.extend((parent, path, exits, keep) for parent in reversed(node.input_tensors))  # first first
    return upstream, opaque


def _upstream_list(upstream) -> str:
    return ", ".join(_describe_upstream(item) for item in upstream)


def _describe_upstream(item: _Upstream) -> str:
    where = "/".join(item.path + (item.operation.name,))
    return f"'{where}' ({type(item.operation).__name__}, {item.activation})"


# ---- the class axis ---------------------------------------------------------------------


def _class_axis_at_output(found: _Producer, head_output, axis, activation, output_name, layer):
    """The number of classes, after checking that the class axis is the output's last axis.

    Follows the class axis through the shape-only layers after the head (the
    route, read backwards). Sigmoid is element-wise: each value of the output
    is a probability, and the last axis holds its classes.
    """
    output_shape = found.route[0].output_tensor.shape if found.route else head_output.shape
    if activation != "softmax":
        return output_shape[-1] if output_shape else None
    position = axis % len(head_output.shape)
    classes = head_output.shape[position]
    for step in reversed(found.route):
        if step.kind != "shape_only" or position is None:
            continue
        position = _class_axis_after(step, position)
        if position is None:
            raise _NoHead(
                f"output '{output_name}': the softmax in {_describe(layer)} normalises over {classes} classes, "
                f"but layer {_describe(step.operation)} then splits or merges that class axis (the output's "
                f"last axis has {output_shape[-1]}), so class ids and statistics would use the wrong axis. "
                "Reshape the logits before the softmax instead, so that the classes stay the last axis"
            )
    if position != len(output_shape) - 1:
        raise _NoHead(
            f"output '{output_name}': the softmax in {_describe(layer)} normalises over axis {position} "
            f"({classes} classes) of an output of shape {tuple(output_shape)}, but keras_logits needs the "
            "classes on the last axis, (batch, ..., classes). Put a Permute before the activation so that "
            "the classes are last, then apply softmax over axis -1"
        )
    return classes


def _class_axis_after(step: Step, position: int):
    """Where the axis at `position` of a shape-only layer's input is in its output, or None if it is gone."""
    before, after = tuple(step.input_tensor.shape), tuple(step.output_tensor.shape)
    if isinstance(step.operation, keras.layers.Permute):
        return list(step.operation.dims).index(position) + 1
    if before == after:
        return position
    classes, leading = before[position], before[1:position]
    for candidate in range(len(after) - 1, 0, -1):
        if after[candidate] != classes:
            continue
        prefix = after[1:candidate]
        if prefix == leading or (None not in prefix + leading and _product(prefix) == _product(leading)):
            return candidate
    return None


def _product(sizes) -> int:
    result = 1
    for size in sizes:
        result *= size
    return result


_FRAMEWORK_MODULES = ("keras", "tensorflow", "jax", "torch")
_ALIASES = {"softmax_v2": "softmax"}  # tf.nn.softmax


def _activation_name(function) -> str:
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
            raise _NoHead(f"softmax over several axes {tuple(axis)} is not a per-class head")
        return int(axis[0])
    return int(axis)


def _size(tensor, axis):
    shape = tensor.shape
    if not shape:
        return None
    return shape[axis]


def features_tensor(tensor):
    """The tensor that feeds the layer producing the logits `tensor` (same walk, not into nested models)."""
    found = _walk(tensor, into_models=False, through_logits=True)
    if _kind(found.operation, found.index) in ("input", "nested"):
        return None
    inputs = found.node.input_tensors
    return inputs[0] if len(inputs) == 1 else None

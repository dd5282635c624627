"""The one walk from a model output back to its head, and what it finds on the way.

`walk` follows a tensor back through shape-only layers, nested models and (on
request) the package's logits-to-logits layers; `kind_of` says what an operation
computes (a head, plain logits, probabilities' descendants, a layer nobody can see
into); `search_upstream` finds softmax/sigmoid layers an output is computed from;
`classes_at_output` follows a softmax's class axis to the output. `head.py` builds
`Head`s and refusals from these; no other module reads graph internals.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

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


@dataclasses.dataclass(frozen=True)
class Step:
    """One operation on the way from a model output back to its head.

    `kind` is `"shape_only"` (a layer such as Flatten that the logits pass
    through), `"nested"` (a submodel whose output is followed inside),
    `"logits_preserving"` (`Temperature`, `MaskedLogits`, `Logits`: only in walks back
    from logits to the layer that computed them), or the
    terminal step: `"fused"` (a Dense/Conv whose own `activation` is the
    softmax/sigmoid), `"separate"` (an `Activation`/`Softmax` layer or op,
    including the one `expose` splits off), `"logits_head"` (a `LogitsHead`)
    or `"given"` (the output already is logits; the activation was passed by
    the caller) or `"known"` (the output is logits whose activation the graph
    records: a `Logits` layer, the logits of a `LogitsHead`, a `PreActivation`
    of a softmax/sigmoid layer; what `logits_model` produces).
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

    @property
    def softmax_mask(self):
        """The mask a `keras.layers.Softmax` step was called with (keyword, position or Keras mask), or None."""
        if not isinstance(self.operation, keras.layers.Softmax):
            return None
        arguments = self.node.arguments
        if arguments.kwargs.get("mask") is not None:
            return arguments.kwargs["mask"]
        return arguments.args[1] if len(arguments.args) > 1 else None

    def replay(self, tensor):
        """Calls this step's operation on `tensor` with the original other arguments (a mask, ...)."""
        return self.operation(tensor, *self.node.arguments.args[1:], **self.node.arguments.kwargs)


class NoHead(Exception):
    """One output has no classification head; the message says why."""


@dataclasses.dataclass(frozen=True)
class Producer:
    """Where a walk back stopped: the operation that computed `tensor`, and the steps to it."""

    operation: Any
    node: Any
    index: int
    tensor: Any
    path: tuple
    route: tuple


def operation_of(tensor):
    """(operation, node, index of the tensor among its outputs) that computed `tensor`; Nones for a constant."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, None, 0
    operation, node_index, tensor_index = history
    return operation, operation._inbound_nodes[node_index], tensor_index


def walk(tensor, *, into_models: bool = True, through_logits: bool = False) -> Producer:
    """THE walk: follows `tensor` back to the operation that computed it.

    It passes through shape-only layers, into nested graph models (unless
    `into_models=False`) and, with `through_logits=True`, through the layers
    that take logits to logits (`Temperature`, `MaskedLogits`, the logits of a
    `LogitsHead`, a linear `Activation`), recording each step.
    """
    path, route = (), ()
    while True:
        operation, node, index = operation_of(tensor)
        kind = kind_of(operation, index)
        if kind == "nested" and into_models:
            route += (Step("nested", operation, node, index),)
            path += (_model_name_in_path(operation),)
            tensor = list(operation.outputs)[index]
        elif kind == "shape_only" or (kind == "logits_preserving" and through_logits):
            route += (Step(kind, operation, node, index),)
            tensor = node.input_tensors[0]
        else:
            return Producer(operation, node, index, tensor, path, route)


def known_activation(tensor) -> Optional[tuple]:
    """`(activation, Producer of the logits)` when `tensor` is logits whose activation the graph records.

    Walking back through shape-only and logits-to-logits layers and nested
    models, the outermost of: a `Logits` layer (what `logits_model` ends in),
    the logits output of a `LogitsHead`, or a `PreActivation` whose wrapped
    layer's own activation is softmax/sigmoid (the logits `expose` split off
    it). None when nothing records it (a Dense without activation, ...).
    """
    found = walk(tensor, through_logits=True)
    for step in found.route:
        if isinstance(step.operation, Logits) or (isinstance(step.operation, LogitsHead) and step.index == 0):
            return step.operation.activation, found
    if isinstance(found.operation, PreActivation):
        name = activation_name(fused_layer(found.operation.layer).activation)
        if name in SUPPORTED_ACTIVATIONS:
            return name, found
    return None


def _model_name_in_path(model) -> str:
    """A nested model's name; an exposed copy of a nested model (`expose` builds one) by its original's."""
    structure = getattr(model, "_outputs_struct", None)
    if isinstance(structure, dict) and {"logits", "probabilities"} <= set(structure):
        return re.sub(r"_exposed(_\d+)?$", "", model.name)
    return model.name


def kind_of(operation, index) -> str:
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


@dataclasses.dataclass(frozen=True)
class _Upstream:
    operation: Any
    path: tuple
    activation: str
    output_name: Optional[str] = None  # set when the activation's tensor is also a model output


def search_upstream(tensor, model_outputs_by_id=None):
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
        operation, node, index = operation_of(current)
        kind = kind_of(operation, index)
        if kind == "activation":
            try:
                activation = activation_of(operation, index)[0]
            except NoHead:
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


def upstream_list(upstream) -> str:
    return ", ".join(describe_upstream(item) for item in upstream)


def describe_upstream(item: _Upstream) -> str:
    where = "/".join(item.path + (item.operation.name,))
    return f"'{where}' ({type(item.operation).__name__}, {item.activation})"


def classes_at_output(found: Producer, head_output, axis, activation, output_name, layer):
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
            raise NoHead(
                f"output '{output_name}': the softmax in {describe(layer)} normalises over {classes} classes, "
                f"but layer {describe(step.operation)} then splits or merges that class axis (the output's "
                f"last axis has {output_shape[-1]}), so class ids and statistics would use the wrong axis. "
                "Reshape the logits before the softmax instead, so that the classes stay the last axis"
            )
    if position != len(output_shape) - 1:
        raise NoHead(
            f"output '{output_name}': the softmax in {describe(layer)} normalises over axis {position} "
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

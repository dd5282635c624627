"""The one walk from a model output back to its head, and what it finds on the way.

`walk` follows a tensor back through shape-only layers, nested models and (on
request) the package's logits-to-logits layers, recording each `Step` with the
values rebuilding it needs; `head_step` is the last step of a head's route, holding
the head's logits, features and mask; `search_upstream` finds softmax/sigmoid layers
an output is computed from; `classes_at_output` follows a softmax's class axis to the
output. What each operation computes is `_operations`' job; the graph's private
attributes are read through `_graph` only.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

import keras

from keras_logits._activations import SUPPORTED_ACTIVATIONS
from keras_logits._graph import call_arguments, model_inputs, operation_of, outputs_structure
from keras_logits._operations import NoHead, activation_name, activation_of, describe, fused_layer, kind_of
from keras_logits.layers import Logits, LogitsHead, PreActivation


@dataclasses.dataclass(frozen=True, eq=False)
class Step:
    """One operation on the way from a model output back to its head, with what rebuilding it needs.

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

    Everything is read from the graph once, as the walk passes: the
    operation's first input and its output on this route, the `args` and
    `kwargs` it was called with (replayed on the logits), and for a nested
    model its `inputs`. The terminal step of a `Head.route` (`head_step`) also
    holds the head's `logits` (the tensor the activation is applied to, or
    the logits output; None for a fused activation, which `PreActivation`
    splits off `input_tensor`), the `logits_layer` computing them, the
    `features` feeding that layer (None when it has no single input), and
    the `mask` a `keras.layers.Softmax` was called with.
    """

    kind: str
    operation: Any
    index: int = 0
    input_tensor: Any = None
    output_tensor: Any = None
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    inputs: Any = None
    logits: Any = None
    logits_layer: Any = None
    features: Any = None
    mask: Any = None


def _step(kind: str, operation, node, index: int) -> Step:
    args, kwargs = call_arguments(node)
    inputs = node.input_tensors
    return Step(kind, operation, index, inputs[0] if inputs else None, node.output_tensors[index], args, kwargs,
                model_inputs(operation) if kind == "nested" else None)


@dataclasses.dataclass(frozen=True)
class Producer:
    """Where a walk back stopped: the operation that computed `tensor`, and the steps to it."""

    operation: Any
    node: Any
    index: int
    tensor: Any
    path: tuple
    route: tuple


def walk(tensor, *, into_models: bool = True, through_logits: bool = False) -> Producer:
    """THE walk: follows `tensor` back to the operation that computed it.

    It passes through shape-only layers, into nested graph models (unless
    `into_models=False`) and, with `through_logits=True`, through the layers
    that take logits to logits (`Temperature`, `MaskedLogits`, the logits of a
    `LogitsHead`, a linear `Activation`), recording each step.

    Example:

    >>> import keras
    >>> inputs = keras.Input((2, 2))
    >>> probabilities = keras.layers.Dense(3, activation="softmax", name="cls")(inputs)
    >>> found = walk(keras.layers.Flatten()(probabilities))
    >>> found.operation.name, [step.kind for step in found.route]
    ('cls', ['shape_only'])
    >>> last = head_step("fused", found)
    >>> last.input_tensor is inputs, last.features is inputs, last.logits is None
    (True, True, True)
    """
    path, route = (), ()
    while True:
        operation, node, index = operation_of(tensor)
        kind = kind_of(operation, index)
        if kind == "nested" and into_models:
            route += (_step("nested", operation, node, index),)
            path += (_model_name_in_path(operation),)
            tensor = list(operation.outputs)[index]
        elif kind == "shape_only" or (kind == "logits_preserving" and through_logits):
            route += (_step(kind, operation, node, index),)
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


def head_step(kind: str, found: Producer, logits_walk: Optional[Producer] = None) -> Step:
    """The last step of a head's route: the operation at `found`, with the head's logits, features and mask.

    `logits_walk` is the walk back from the logits (not into nested models,
    through logits-to-logits layers) where the caller has made it already.
    """
    step = _step(kind, found.operation, found.node, found.index)
    if kind == "fused":
        return dataclasses.replace(step, logits_layer=found.operation, features=step.input_tensor)
    if kind in ("given", "known"):
        logits = step.output_tensor  # the model outputs them
    elif kind == "logits_head":
        logits = found.node.output_tensors[0]  # LogitsHead's outputs are flattened in key order: logits first
    else:
        logits = step.input_tensor
    # The same walk back as find_head's, not into nested models: the features are in the logits' own graph.
    producer = walk(logits, into_models=False, through_logits=True) if logits_walk is None else logits_walk
    inputs = producer.node.input_tensors if producer.node is not None else ()
    has_features = kind_of(producer.operation, producer.index) not in ("input", "nested") and len(inputs) == 1
    return dataclasses.replace(step, logits=logits, logits_layer=producer.operation,
                               features=inputs[0] if has_features else None, mask=_softmax_mask(step))


def _softmax_mask(step: Step):
    """The mask a `keras.layers.Softmax` step was called with (keyword, position or Keras mask), or None."""
    if not isinstance(step.operation, keras.layers.Softmax):
        return None
    if step.kwargs.get("mask") is not None:
        return step.kwargs["mask"]
    return step.args[1] if len(step.args) > 1 else None


def _model_name_in_path(model) -> str:
    """A nested model's name; an exposed copy of a nested model (`expose` builds one) by its original's."""
    structure = outputs_structure(model)
    if isinstance(structure, dict) and {"logits", "probabilities"} <= set(structure):
        return re.sub(r"_exposed(_\d+)?$", "", model.name)
    return model.name


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



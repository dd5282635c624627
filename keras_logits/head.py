"""Locate the classification head of a Keras model.

`find_head` walks back from each output once (`_walk`) and returns a `Head` that
carries everything downstream needs: its route from the output to the activation,
whose last step holds the logits, the features and the mask. Nothing downstream
walks the graph again; `expose` builds from the `Head` alone. Why an output is not
a head is `_diagnosis`' job; Keras' private graph attributes are read in `_graph` only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from keras_logits._activations import check_activation
from keras_logits._diagnosis import (
    check_given_logits,
    check_is_head,
    check_not_from_probabilities,
    no_head_error,
)
from keras_logits._graph import check_is_graph_model, model_outputs
from keras_logits._operations import NoHead, activation_name, activation_of, describe, fused_layer, kind_of, size_of
from keras_logits._walk import Producer, classes_at_output, head_step, known_activation, walk
from keras_logits.layers import LogitsHead, PreActivation


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
        applied_by_model: False when the model outputs logits: the activation
            comes from the caller (`activation=`) or is recorded in the graph
            (a `logits_model`: its `layers.Logits` layer, the logits of a
            `LogitsHead`, a `PreActivation` of a softmax/sigmoid layer).
        route: The steps from the model output back to the head, outermost
            first, read from the graph once (`_walk.Step`): the last one holds
            the head's logits, the features feeding their layer and a
            softmax's mask, so `expose` builds from the `Head` alone.

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
        return self.route[-1].logits_layer

    def describe(self) -> str:
        """One line for people: layer, activation, fused or separate, classes, path."""
        where = "/".join(self.path + (self.layer.name,))
        kind = "fused into" if self.fused else "separate layer"
        if self.route and self.route[-1].kind == "known":
            kind = "left out by the model, which outputs the logits of"
        elif not self.applied_by_model:
            kind = "given by caller after"
        positions = self.positions
        per_position = f", per-position head, positions ({', '.join(str(size) for size in positions)})" if positions else ""
        return (
            f"{self.activation} ({kind} {type(self.layer).__name__} '{where}'), "
            f"{self.num_classes} classes on axis {self.axis}{per_position}, output '{self.output_name}'"
        )

    @property
    def positions(self) -> tuple:
        """Sizes of the model output's axes between batch and classes (pixels, tokens); `()` for one per sample."""
        if not self.route:
            return ()
        # route[0] produced the model output itself: shape-only layers after the head may add or remove positions.
        shape = tuple(self.route[0].output_tensor.shape)
        return shape[1:-1] if len(shape) > 2 else ()


def find_head(model, *, output: Optional[str] = None, activation: Optional[str] = None) -> Head:
    """Finds the layer that turns logits into probabilities in `model`.

    Walks back from the model output through shape-only layers (Flatten,
    Reshape, Dropout, Identity, ...) and into nested models until it reaches the
    softmax/sigmoid, fused into a Dense/Conv layer or applied by a separate
    `Activation`/`Softmax` layer. The package's own layers are known by type: a
    `LogitsHead`'s `"probabilities"` output, and the activation `expose` split
    off a `PreActivation` (described as the original fused layer). An output
    that is logits with a recorded activation (what `logits_model` returns,
    ending in `layers.Logits`; the logits of a `LogitsHead`; a
    `PreActivation` of a softmax/sigmoid layer) is a head the model leaves
    out: `applied_by_model=False`, no `activation=` needed (a different one
    is refused). An exposed model's `"logits"` belong to its
    `"probabilities"` head, not a second one.

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
    output = _exposed_output_name(output, heads, problems)
    if output is not None and output in problems:
        raise ValueError(
            f"Model '{model.name}' has no classification output named '{output}' (its classification outputs "
            f"are {sorted(heads)}): {problems[output]}."
        )
    if not heads:
        raise no_head_error(model, problems)
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
        raise no_head_error(model, problems)
    return heads


def _heads_and_problems(model, activation):
    """`({output: Head}, {output: why it has none})` from one walk per output."""
    check_is_graph_model(model)
    if activation is not None:
        check_activation(activation)
    outputs = model_outputs(model)
    outputs_by_id = {id(tensor): name for name, tensor in outputs.items()}
    heads, problems = {}, {}
    for name, tensor in outputs.items():
        try:
            heads[name] = _head_of(tensor, name, activation, outputs_by_id)
        except NoHead as problem:
            problems[name] = problem
    # An exposed model's "logits" output is known logits too, of the head its "probabilities" output applies:
    # one head, not two.
    applied = {id(_logits_tensor(head)): name for name, head in heads.items()
               if head.applied_by_model and _logits_tensor(head) is not None}
    for name, head in list(heads.items()):
        twin = applied.get(id(_logits_tensor(head))) if head.route[-1].kind == "known" else None
        if twin is not None:
            del heads[name]
            problems[name] = NoHead(f"output '{name}' is the logits of output '{twin}'; use that one")
    return heads, problems


def _exposed_output_name(output: Optional[str], heads: dict, problems: dict) -> Optional[str]:
    """`output`, or `'<output>/probabilities'` where `expose` renamed a multi-head model's output `output` so."""
    if output is None or output in heads or output in problems:
        return output
    renamed = f"{output}/probabilities"
    return renamed if renamed in heads else output


def _logits_tensor(head: Head):
    """The tensor of a head's logits, as far back as the logits-to-logits layers go; None for a fused head."""
    step = head.route[-1]
    if step.kind == "known":
        return walk(step.output_tensor, through_logits=True).tensor
    if step.kind in ("separate", "logits_head"):
        return walk(step.input_tensor, through_logits=True).tensor
    return None


def _head_of(tensor, output_name, given_activation, outputs_by_id):
    """The head of one output; raises NoHead with the reason and the way forward."""
    found = walk(tensor)
    check_is_head(found, output_name, given_activation)
    if kind_of(found.operation, found.index) == "activation":
        return _activation_head(found, output_name)
    known = known_activation(tensor)
    if known is not None:
        return _known_head(found, known, output_name, given_activation)
    check_given_logits(found, output_name, given_activation, outputs_by_id)
    return _logits_output_head(found, output_name, given_activation, "given", found.operation, False, found.path)


def _known_head(found: Producer, known: tuple, output_name: str, given_activation: Optional[str]) -> Head:
    """An output that is logits for a recorded activation (what `logits_model` returns): a head the model leaves out."""
    activation, source = known
    if given_activation is not None and given_activation != activation:
        raise NoHead(
            f"output '{output_name}' is the logits of a {activation} head ({describe(source.operation)}); "
            f"activation={given_activation!r} contradicts it. Leave out activation= (it is known)"
        )
    layer = source.operation
    fused = isinstance(layer, PreActivation)
    if fused:
        layer = layer.layer  # described as the original model's layer, as exposed models describe it
    return _logits_output_head(found, output_name, activation, "known", layer, fused, source.path)


def _logits_output_head(found: Producer, output_name: str, activation: str, kind: str, layer, fused: bool,
                        path: tuple) -> Head:
    """The head of an output that is logits: the model leaves the activation out (`applied_by_model=False`)."""
    return Head(
        layer=layer,
        activation=activation,
        fused=fused,
        axis=-1,
        num_classes=size_of(found.tensor, -1),
        path=path,
        output_name=output_name,
        applied_by_model=False,
        route=found.route + (head_step(kind, found),),
    )


def _activation_head(found: Producer, output_name: str) -> Head:
    operation, node = found.operation, found.node
    activation, axis, fused = activation_of(operation, found.index)
    split_off = None
    if fused:
        kind, layer = "fused", operation
    else:
        kind, layer = ("logits_head" if isinstance(operation, LogitsHead) else "separate"), operation
        logits = node.input_tensors[0]
        split_off = walk(logits, into_models=False, through_logits=True)
        wrapped = getattr(split_off.operation, "layer", None)
        applied_before = [step.operation for step in split_off.route
                          if isinstance(step.operation, LogitsHead) and step.operation.activation == activation]
        if isinstance(split_off.operation, PreActivation) and _output_activation_name(wrapped) == activation:
            layer, fused = wrapped, True  # expose() split this activation off `wrapped`: describe it as fused
        elif applied_before:
            layer = applied_before[0]  # expose(temperature=) re-applied a LogitsHead's activation to scaled logits
        else:
            check_not_from_probabilities(operation, logits, activation, output_name)
    head_output = node.output_tensors[found.index]
    num_classes = classes_at_output(found, head_output, axis, activation, output_name, layer)
    return Head(
        layer=layer,
        activation=activation,
        fused=fused,
        axis=-1,
        num_classes=num_classes,
        path=found.path,
        output_name=output_name,
        route=found.route + (head_step(kind, found, split_off),),
    )


def _output_activation_name(layer) -> Optional[str]:
    fused = fused_layer(layer)
    return None if fused is None else activation_name(fused.activation)



"""Why an output is not a classification head: `find_head`'s refusals, and what `checks` reads.

Each refusal names what was found and the way forward, and its advice is safe to
follow: `activation=` is never suggested for an output computed from a softmax or
sigmoid further up, nor for one that comes from a layer the package cannot see into.
`output_activations` and `outputs_from_probabilities` describe the outputs that are
not heads, for `keras_logits.checks`.
"""

from __future__ import annotations

import warnings
from typing import Optional

import keras

from keras_logits._graph import model_outputs
from keras_logits._operations import NoHead, activation_of, describe, kind_of, size_of
from keras_logits._walk import Producer, describe_upstream, search_upstream, upstream_list, walk


def check_is_head(found: Producer, output_name: str, given_activation: Optional[str]) -> None:
    """Raises NoHead where the operation an output comes from rules a head out (or `activation=` contradicts it)."""
    operation = found.operation
    kind = kind_of(operation, found.index)
    if kind == "input":
        if given_activation is not None and operation is not None:
            raise NoHead(f"output '{output_name}' is the model input itself; there is no logits layer")
        raise NoHead(f"output '{output_name}' is a model input, not a classifier output")
    if kind == "recurrent":
        raise NoHead(
            f"output '{output_name}' comes from the recurrent layer {describe(operation)}, whose "
            "activation is the cell's internal activation, not a classification head. End the model in "
            "Dense(num_classes, activation='softmax'), or TimeDistributed(Dense(num_classes, "
            "activation='softmax')) for one class per time step"
        )
    if kind == "other_activation":
        activation = activation_of(operation, found.index)[0]
        raise NoHead(
            f"output '{output_name}' comes from layer {describe(operation)} with activation "
            f"'{activation}', which is not a classification activation. keras_logits supports "
            "softmax and sigmoid heads; if the tensor before it is what you want, end the "
            "model there and pass activation='softmax' or 'sigmoid'"
        )
    if kind == "activation" and given_activation is not None:
        activation = activation_of(operation, found.index)[0]
        raise NoHead(
            f"output '{output_name}' already applies {activation} in layer "
            f"{describe(operation)}; leave out activation= and the logits are found for you"
        )


def check_not_from_probabilities(operation, logits, activation: str, output_name: str) -> None:
    """Raises NoHead where the scores a softmax/sigmoid is applied to are computed from probabilities."""
    upstream, _ = search_upstream(logits)
    if upstream:
        raise NoHead(
            f"output '{output_name}' applies {activation} in layer {describe(operation)} to values "
            f"computed from {upstream_list(upstream)} further up: they are probabilities, not "
            "logits. End the model at the first activation, or remove one of them"
        )


def check_given_logits(found: Producer, output_name: str, given_activation: Optional[str], outputs_by_id) -> None:
    """An output that is not a head: logits the caller vouches for (warned where unverifiable), or NoHead saying why not."""
    operation = found.operation
    upstream, opaque = search_upstream(found.tensor, outputs_by_id)
    if upstream and isinstance(operation, keras.layers.Masking):
        # Replayed on the logits, Masking would compute its mask from the logits' values (zero logits of padding
        # are masked, their uniform probabilities are not): the two outputs would disagree on the mask.
        raise NoHead(
            f"output '{output_name}' comes from layer {describe(operation)} applied to {upstream_list(upstream)}: "
            "its Keras mask is computed from the probabilities' values, and the logits cannot carry the same "
            "mask. Put the Masking layer on the inputs (before the classifier), or end the model at the "
            "softmax/sigmoid (its logits are then found for you)"
        )
    if upstream:
        outputs = sorted({item.output_name for item in upstream if item.output_name is not None})
        ways = [f"pick a member's own output with head=<one of {outputs}>"] if outputs else []
        if any(item.path for item in upstream):
            ways.append("expose the member models one by one (keras_logits.expose(member))")
        ways.append("end the model at the softmax/sigmoid (its logits are then found for you)")
        raise NoHead(
            f"output '{output_name}' comes from layer {describe(operation)}, which is computed from "
            f"{upstream_list(upstream)} further up: its values are neither logits nor the model's "
            f"probabilities, and no activation= makes them so. To get logits, {', or '.join(ways)}"
        )
    if opaque:
        names = ", ".join(describe(layer) for layer in opaque)
        if given_activation is None:
            raise NoHead(
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
        raise NoHead(
            f"output '{output_name}' comes from layer {describe(operation)}, which has no "
            "activation. If that output already is logits, pass activation='softmax' "
            "(one class per sample) or activation='sigmoid' (binary / multi-label)"
        )


def no_head_error(model, problems: dict) -> ValueError:
    """The error of a model none of whose outputs is a head, from each output's NoHead."""
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
        found = walk(tensor)
        kind = kind_of(found.operation, found.index)
        if kind in ("activation", "other_activation"):
            try:
                activation = activation_of(found.operation, found.index)[0]
            except NoHead:  # softmax over several axes
                activation = "softmax"
        else:
            activation = "linear" if kind in ("linear", "logits_preserving") else None
        activations[name] = (activation, size_of(tensor, -1))
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
        producer = walk(tensor)
        if kind_of(producer.operation, producer.index) in ("activation", "input", "recurrent"):
            continue
        upstream, _ = search_upstream(producer.tensor)
        if upstream:
            found[name] = [describe_upstream(item) for item in upstream]
    return found

"""Build one model that returns a classifier's logits and probabilities."""

from __future__ import annotations

import dataclasses
from typing import Optional

import keras

from keras_logits._graph import all_layers, model_inputs, model_outputs
from keras_logits.head import Head, find_head, find_heads
from keras_logits.hub import fold_preprocessor
from keras_logits.layers import MaskedLogits, PreActivation, Temperature

LOGITS, PROBABILITIES, FEATURES = "logits", "probabilities", "features"


@dataclasses.dataclass
class _Outputs:
    """Symbolic tensors of one head, in one graph."""

    logits: object
    probabilities: object
    features: object = None

    def as_dict(self, with_features: bool) -> dict:
        outputs = {LOGITS: self.logits, PROBABILITIES: self.probabilities}
        if with_features:
            outputs[FEATURES] = self.features
        return outputs


def expose(
    model: keras.Model,
    *,
    features: bool = False,
    activation: Optional[str] = None,
    name: Optional[str] = None,
    head: Optional[str] = None,
    temperature=None,
) -> keras.Model:
    """Returns a model whose outputs are `{"logits", "probabilities"}` of `model`.

    Both come from one forward pass that shares `model`'s layers and weights:
    training the exposed model trains the original. `model` itself is not
    changed. Where the head sits in `model`'s own graph (functional or
    Sequential), that graph is reused; where it sits inside a nested model, the
    nested model is exposed the same way and called in its place.

    Args:
        model: A built functional or Sequential classifier.
        features: Also return `"features"`, the tensor that feeds the head.
        activation: `"softmax"` or `"sigmoid"` when `model` outputs logits
            already; `probabilities` then is that activation of them.
        name: Name of the new model (default: `"<model name>_exposed"`).
        head: For a model with several classification outputs, the name of
            the one to expose. By default each is exposed under keys
            `"<output>/logits"` and `"<output>/probabilities"`, and outputs
            without a head are passed through under their own name.
        temperature: Calibrate: a fitted
            `keras_logits.calibration.TemperatureScaling`, a float, or one
            float per class (sigmoid). `logits` then are `logits / T` and
            `probabilities` their activation, through a serializable
            `Temperature` layer, so saved models and exports keep it. Needs a
            single head (`head=` on multi-output models).

    Returns:
        A functional `keras.Model`. Its outputs are float32 even under a
        mixed-precision policy. Where `keras.layers.Softmax` was called with a
        mask, the masked logits are -1e9 (-3e4 in float16), as that layer sets
        them, so that `softmax(logits) == probabilities` at every position.

    Raises:
        ValueError: where an output cannot be vouched for: computed from a
            softmax/sigmoid further up (an ensemble average, a rescaling; also
            with `activation=`), from a recurrent layer, or a softmax whose
            classes do not end on the last axis. The message says what to do.
            An output from a layer the package cannot see into (Lambda, custom
            layers) is refused without `activation=` and exposed with a
            `UserWarning` with it.

    Example:

    >>> import keras, numpy as np, keras_logits
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> exposed = keras_logits.expose(model)
    >>> outputs = exposed.predict(np.ones((2, 4)), verbose=0)
    >>> sorted(outputs)
    ['logits', 'probabilities']
    >>> bool(np.allclose(outputs["probabilities"], model.predict(np.ones((2, 4)), verbose=0)))
    True
    """
    model = fold_preprocessor(model)  # a KerasHub task's predict() preprocesses; its graph alone does not
    if head is not None:
        heads = {head: find_head(model, output=head, activation=activation)}
    else:
        heads = find_heads(model, activation=activation)
    temperature = _temperature_value(temperature)
    if temperature is not None and len(heads) > 1:
        raise ValueError(
            f"temperature= calibrates one head, but model '{model.name}' has {len(heads)} classification "
            f"outputs {sorted(heads)}; pick one with head=<name>."
        )

    all_outputs = model_outputs(model)
    taken = {layer.name for layer in all_layers(model, include_self=True)}
    # A model that already returns {"logits", "probabilities"} (exposed, or ending in LogitsHead) is re-exposed
    # as one head, not as a "probabilities" head beside a passed-through "logits".
    already_exposed = set(heads) == {PROBABILITIES} and LOGITS in all_outputs
    if head is not None or len(all_outputs) == 1 or already_exposed:
        (only,) = heads.values()
        outputs = _float32(_outputs_of(only, features, taken, temperature).as_dict(features), taken)
    else:
        outputs = {}
        for output_name, tensor in all_outputs.items():
            if output_name in heads:
                exposed = _outputs_of(heads[output_name], features, taken, temperature).as_dict(features)
                for key, value in exposed.items():
                    outputs[f"{output_name}/{key}"] = value
            else:
                outputs[output_name] = tensor
        outputs = _float32(outputs, taken)
    return keras.Model(model_inputs(model), outputs, name=name or f"{model.name}_exposed")


def ensure_exposed(model: keras.Model, *, features: bool = False, temperature=None,
                   head: Optional[str] = None, activation: Optional[str] = None) -> tuple:
    """Returns `(exposed model, head of its probabilities)` for an original or exposed model.

    An exposed model (outputs `logits` and `probabilities`) is used as it is,
    without its `features` output unless `features=True`; an original model
    is exposed, picking its single classification output, or the output named
    `head` on a model with several. A `logits_model` (or any output ending in
    `layers.Logits`) needs no `activation=`: it records its own.

    Args:
        model: An original classifier, an exposed model or a `logits_model`.
        features: Keep (or add) the `"features"` output.
        temperature: Bake a temperature in (original models only).
        head: The classification output to take on a model with several.
        activation: `"softmax"` or `"sigmoid"` for a model that outputs logits
            nobody recorded (a Dense without activation at the end; KerasHub
            tasks built with their default `activation=None`). A model that
            applies its activation itself refuses it, as `find_head` does.

    Example:

    >>> import keras, keras_logits
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> exposed, head = ensure_exposed(model)
    >>> ensure_exposed(exposed)[0] is exposed, head.activation
    (True, 'softmax')
    """
    outputs = model_outputs(model)
    if LOGITS in outputs and PROBABILITIES in outputs:
        if head is not None and head not in (LOGITS, PROBABILITIES):
            raise ValueError(
                f"head={head!r}, but model '{model.name}' is already exposed (outputs 'logits' and "
                "'probabilities'); leave out head=, or pass the original model."
            )
        if activation is not None:
            find_head(model, output=PROBABILITIES, activation=activation)  # raises: it applies its own
        if temperature is not None:
            raise ValueError(
                f"Model '{model.name}' is already exposed; a temperature is baked in when exposing. "
                "Pass the original model with temperature=..., or expose(model, temperature=...)."
            )
        if features and FEATURES not in outputs:
            raise ValueError(
                f"features=True, but exposed model '{model.name}' has no 'features' output. "
                "Pass the original model, or expose(model, features=True)."
            )
        exposed = model
        if FEATURES in outputs and not features:
            exposed = keras.Model(model.inputs, {LOGITS: outputs[LOGITS], PROBABILITIES: outputs[PROBABILITIES]},
                                  name=model.name)
        return exposed, find_head(model, output=PROBABILITIES)
    found = find_head(model, output=head, activation=activation)
    exposed = expose(model, features=features, head=found.output_name if len(outputs) > 1 else None,
                     temperature=temperature, activation=activation)
    return exposed, found


def _temperature_value(temperature):
    """None, a float or a list of floats, from a number, a sequence or a fitted TemperatureScaling."""
    if temperature is None:
        return None
    if hasattr(temperature, "fit") and hasattr(temperature, "transform"):  # a TemperatureScaling
        if getattr(temperature, "temperature_", None) is None:
            raise ValueError("The TemperatureScaling passed as temperature= is not fitted; call fit() first.")
        temperature = temperature.temperature_
    elif hasattr(temperature, "temperature"):  # a Temperature layer
        temperature = temperature.temperature
    if hasattr(temperature, "tolist"):
        temperature = temperature.tolist()
    return temperature


def _outputs_of(head: Head, with_features: bool, taken: set, temperature=None) -> _Outputs:
    outputs = _follow(head.route, head, taken, temperature)
    if with_features and outputs.features is None:
        raise ValueError(
            f"features=True, but the logits layer {head.logits_layer.name!r} of output "
            f"'{head.output_name}' has no single input tensor to return as features."
        )
    return outputs


def _follow(route, head: Head, taken: set, temperature=None) -> _Outputs:
    """Builds logits/probabilities for `route[0]`'s graph, recursing into the rest.

    Reads only what `find_head` put in the route: each step's operation and call
    arguments, and in the last one the head's logits, features and mask.
    """
    step, rest = route[0], route[1:]
    if step.kind == "shape_only":
        inner = _follow(rest, head, taken, temperature)
        if isinstance(step.operation, keras.layers.ActivityRegularization):
            # The identity on values; called on the logits too it would add a second penalty to the loss.
            return _Outputs(inner.logits, _replay(step, inner.probabilities), inner.features)
        return _Outputs(_replay(step, inner.logits), _replay(step, inner.probabilities), inner.features)
    if step.kind == "nested":
        inner = _follow(rest, head, taken, temperature)
        inner_model = keras.Model(
            step.inputs,
            inner.as_dict(with_features=inner.features is not None),
            name=_fresh(f"{step.operation.name}_exposed", taken),
        )
        called = inner_model(*step.args, **step.kwargs)
        return _Outputs(called[LOGITS], called[PROBABILITIES], called.get(FEATURES))
    if step.kind == "logits_head":
        if temperature is None:
            return _Outputs(step.logits, step.output_tensor, step.features)
        scaled = _scale(step.logits, temperature, head, taken)
        activated = _activate(scaled, head, taken, axis=step.operation.axis)
        return _Outputs(scaled, activated, step.features)
    if step.kind == "separate":
        if step.mask is not None:
            # Softmax(mask=...) sends masked scores to a large negative number first; the logits must too.
            masked = MaskedLogits(name=_fresh(f"{head.layer.name}_masked_logits", taken))(step.logits, mask=step.mask)
            scaled = _scale(masked, temperature, head, taken)
            probabilities = step.output_tensor if temperature is None else _replay(step, scaled)
            return _Outputs(scaled, probabilities, step.features)
        if temperature is not None:
            # The model's own Softmax/Activation layer (stateless) keeps its axis.
            scaled = _scale(step.logits, temperature, head, taken)
            return _Outputs(scaled, _replay(step, scaled), step.features)
        return _Outputs(step.logits, step.output_tensor, step.features)
    if step.kind == "fused":
        logits = PreActivation(step.operation, name=_fresh(f"{step.operation.name}_logits", taken))(step.input_tensor)
        logits = _scale(logits, temperature, head, taken)
        return _Outputs(logits, _activate(logits, head, taken), step.features)
    # "given" / "known": the model outputs logits; apply the caller's (or the recorded) activation.
    logits = _scale(step.logits, temperature, head, taken)
    return _Outputs(logits, _activate(logits, head, taken), step.features)


def _replay(step, tensor):
    """Calls a step's operation on `tensor` with the other arguments it was called with (a mask, ...)."""
    return step.operation(tensor, *step.args[1:], **step.kwargs)


def _scale(logits, temperature, head: Head, taken: set):
    """`logits / temperature` through a Temperature layer (no layer without a temperature)."""
    if temperature is None:
        return logits
    if isinstance(temperature, list) and len(temperature) > 1 and head.activation == "softmax":
        raise ValueError(
            "One temperature per class is for sigmoid heads: under softmax it would change which "
            "class is predicted. Pass a single temperature."
        )
    if isinstance(temperature, list) and head.num_classes is not None and len(temperature) != head.num_classes:
        raise ValueError(
            f"{len(temperature)} temperatures for a head of {head.num_classes} classes; pass one "
            "temperature, or one per class."
        )
    return Temperature(temperature, name=_fresh(f"{head.layer.name}_temperature", taken))(logits)


def _activate(logits, head: Head, taken: set, axis: int = -1):
    """Applies the head's activation as its own layer, in float32 under mixed precision.

    The logits tensor itself stays an output: passing it through LogitsHead
    would add an Identity op per call, measurable on small models.
    """
    low_precision = keras.backend.standardize_dtype(logits.dtype) in ("float16", "bfloat16")
    dtype = "float32" if low_precision else None
    name = _fresh(f"{head.layer.name}_{head.activation}", taken)
    if head.activation == "softmax" and axis % len(logits.shape) != len(logits.shape) - 1:
        return keras.layers.Softmax(axis=axis, dtype=dtype, name=name)(logits)
    return keras.layers.Activation(head.activation, dtype=dtype, name=name)(logits)


def _fresh(name: str, taken: set) -> str:
    """`name`, or `name_2`, `name_3`, ... if a layer of the model already has it."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}_{number}"
    taken.add(candidate)
    return candidate


def _float32(outputs: dict, taken: set) -> dict:
    """Casts floating outputs that are not float32 (mixed precision) to float32."""
    cast = {}
    for key, tensor in outputs.items():
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if dtype in ("float16", "bfloat16"):
            tensor = keras.layers.Identity(
                dtype="float32", name=_fresh(f"{key.replace('/', '_')}_float32", taken)
            )(tensor)
        cast[key] = tensor
    return cast

"""How `PreActivation` computes a layer's pre-activation: which layers it can split, their linear twin, quantization.

A Dense/Conv layer's own `call` computes a linear map and applies `self.activation`
last; a shallow copy whose `activation` is linear (the twin) computes the logits with
the same variables. This module says which layers that holds for, builds the twin,
checks quantized layers, and computes the activity penalty Keras would add.
"""

from __future__ import annotations

import keras

# Layers whose own `call` computes a linear map and applies `self.activation` to it
# last, reading the activation from the instance: a twin of such a layer whose
# instance attribute `activation` is linear computes the pre-activation with the
# same variable objects. Subclasses that override `call` are not on the list: what
# their `call` does with the activation cannot be known.
_SPLITTABLE = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
)
_SPLITTABLE_CALLS = {cls.call for cls in _SPLITTABLE}


def is_splittable(layer) -> bool:
    if isinstance(layer, keras.layers.TimeDistributed) and type(layer).call is keras.layers.TimeDistributed.call:
        return is_splittable(layer.layer)
    return isinstance(layer, _SPLITTABLE) and type(layer).call in _SPLITTABLE_CALLS


def why_not_splittable(layer) -> str:
    name = getattr(layer, "name", None)
    described = f"layer '{name}' ({type(layer).__name__})" if name else f"a {type(layer).__name__} object"
    if isinstance(layer, keras.layers.TimeDistributed) and type(layer).call is keras.layers.TimeDistributed.call:
        return f"{described} wrapping {why_not_splittable(layer.layer)}"
    if isinstance(layer, (*_SPLITTABLE, keras.layers.TimeDistributed)):
        return f"{described}, whose class overrides call(), so where it applies its activation cannot be known"
    return f"{described}, which is not one of them"


def linear_twin(layer):
    """A shallow copy of `layer` whose activation is linear; same variables, original untouched.

    Built per call from the layer's current attributes (so a layer built or
    LoRA-enabled after wrapping is followed), without `Layer.__setattr__`: the twin
    is never tracked, registered as a torch submodule or serialized. The original
    model may run the layer in another thread at the same moment; nothing here writes
    to it.

    Example:

    >>> import keras
    >>> dense = keras.layers.Dense(2, activation="sigmoid")
    >>> dense.build((None, 3))
    >>> twin = linear_twin(dense)
    >>> twin.activation is keras.activations.linear, dense.activation.__name__, twin.kernel is dense.kernel
    (True, 'sigmoid', True)
    """
    twin = object.__new__(type(layer))
    twin.__dict__.update(layer.__dict__)
    if isinstance(layer, keras.layers.TimeDistributed):
        twin.__dict__["layer"] = linear_twin(layer.layer)  # TimeDistributed calls `self.layer.call`
    else:
        twin.__dict__["activation"] = keras.activations.linear
    return twin


# Quantization modes whose Keras call (`Dense`/`EinsumDense._<mode>_call`) computes the
# quantized linear map and applies `self.activation` last, as `call` does, and that the
# tests check against a quantized no-activation twin. GPTQ and AWQ need calibration data
# and are not checked here, so they are refused rather than trusted.
_QUANTIZED_SPLITTABLE = {
    keras.layers.Dense: ("int8", "int4", "float8"),
    keras.layers.EinsumDense: ("int8", "int4", "float8"),
}


def check_quantization(layer) -> None:
    """Refuses a quantized layer whose pre-activation this module cannot compute."""
    inner = layer.layer if isinstance(layer, keras.layers.TimeDistributed) else layer
    mode = getattr(inner, "quantization_mode", None)
    if mode is None:
        return
    described = f"layer '{inner.name}' ({type(inner).__name__})"
    if inner is not layer:
        # TimeDistributed calls `layer.call`, bypassing Keras' quantized-call dispatch, so
        # even the original model does not compute the quantized map there.
        raise ValueError(
            f"PreActivation cannot split the activation off {described}, quantized to '{mode}' "
            f"inside TimeDistributed '{layer.name}': Keras' TimeDistributed calls the layer's float "
            "call on its quantized kernel, so not even the model computes the quantized head. Leave "
            f"the head unquantized (model.quantize(mode, filters=lambda layer: layer.name != '{inner.name}'))."
        )
    supported = _QUANTIZED_SPLITTABLE.get(type(inner), ())
    if mode not in supported:
        raise ValueError(
            f"PreActivation cannot split the activation off {described}, quantized to '{mode}': "
            "supported are Dense and EinsumDense quantized to 'int8', 'int4' or 'float8'. Quantize "
            "the model with one of these modes, or leave its head unquantized (model.quantize(mode, "
            f"filters=lambda layer: layer.name != '{inner.name}'))."
        )


def float_policy(policy):
    """`policy` without its quantization: a wrapper must not dispatch to a quantized call."""
    policy = keras.dtype_policies.get(policy)
    if policy.quantization_mode is None:
        return policy
    # Quantized policies are named "<mode>_from_<source policy>" (keras/src/dtype_policies).
    return keras.dtype_policies.get(policy.name.split("_from_", 1)[1])


def output_activation(layer):
    """The activation `layer` applies to its output (inside a TimeDistributed, the inner one)."""
    if isinstance(layer, keras.layers.TimeDistributed):
        return output_activation(layer.layer)
    return layer.activation


def activity_penalty(regularizer, output):
    """The activity loss `Layer.__call__` adds for `output`: the penalty per sample of the batch."""
    loss = regularizer(output)
    if len(output.shape) > 0:
        batch_size = keras.ops.cast(keras.ops.shape(output)[0], dtype=loss.dtype)
        loss = keras.ops.divide_no_nan(loss, batch_size)
    return loss

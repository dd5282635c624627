"""Small serializable layers that give a classifier both of its outputs."""

from __future__ import annotations

import keras

from keras_logits._activations import check_activation
from keras_logits._linear_twin import (
    activity_penalty,
    check_quantization,
    float_policy,
    is_splittable,
    linear_twin,
    output_activation,
    why_not_splittable,
)

@keras.saving.register_keras_serializable(package="keras_logits")
class PreActivation(keras.layers.Wrapper):
    """Calls a layer without its activation, sharing its weights.

    `PreActivation(dense)(x)` computes `x @ kernel + bias` of a
    `Dense(..., activation="softmax")` layer: the logits that the fused softmax
    would otherwise hide. The wrapped layer's variables are used, not copied, so
    training through the wrapper trains the original layer. The wrapped layer
    itself is never modified (not even for the duration of a call), so the
    original model can run in another thread at the same time.

    Training through the wrapper is training the original layer: its kernel and
    bias regularizers count once (the variables are shared), and its
    `activity_regularizer`, which Keras applies to the layer's output, is
    applied to the same tensor as in the original: the activation of the
    logits (for a fused softmax, the probabilities), divided by the batch size
    as Keras does. Masks pass through as the wrapped layer passes them.

    Args:
        layer: A built or unbuilt `Dense`, `EinsumDense`, `Conv1D/2D/3D`,
            `Conv1D/2D/3DTranspose`, `SeparableConv1D/2D` or
            `DepthwiseConv1D/2D` layer, or a `TimeDistributed` wrapping one
            (the activation is split off inside the wrapper). Subclasses that
            override `call` are refused; see `PreActivation.supports`. A
            `Dense` or `EinsumDense` quantized to int8, int4 or float8
            (before or after wrapping) is called through its own quantized
            call; other quantized heads are refused with the reason.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...). The dtype
            policy defaults to the wrapped layer's, without its quantization
            (`int8_from_float32` gives `float32`).

    Example:

    >>> import keras, numpy as np
    >>> dense = keras.layers.Dense(3, activation="softmax")
    >>> x = np.ones((2, 4), "float32")
    >>> probabilities = dense(x)
    >>> logits = PreActivation(dense)(x)
    >>> difference = keras.ops.convert_to_numpy(keras.ops.softmax(logits) - probabilities)
    >>> bool(np.abs(difference).max() < 1e-6)
    True
    >>> PreActivation.supports(keras.layers.TimeDistributed(dense)), PreActivation.supports(keras.layers.LSTM(3))
    (True, False)
    """

    def __init__(self, layer, **kwargs):
        if not PreActivation.supports(layer):
            raise ValueError(
                "PreActivation splits the activation off Dense, EinsumDense, Conv, ConvTranspose, "
                "SeparableConv and DepthwiseConv layers (also inside TimeDistributed); got "
                f"{why_not_splittable(layer)}. End the model with a Dense or Conv layer without "
                "activation followed by keras.layers.Activation('softmax') (or 'sigmoid'); the tensor "
                "between them is the logits."
            )
        check_quantization(layer)
        # The wrapped layer's quantized call runs through its twin; the wrapper itself
        # computes in the source float policy (a quantized one would make Keras dispatch
        # to `PreActivation._int8_call`, which does not exist).
        kwargs["dtype"] = float_policy(kwargs.get("dtype") or layer.dtype_policy)
        super().__init__(layer, **kwargs)
        # Masks pass through exactly as the wrapped layer passes (or drops) them.
        self.supports_masking = layer.supports_masking
        if layer.built:
            self.built = True

    @staticmethod
    def supports(layer) -> bool:
        """Whether `PreActivation` can split the activation off `layer`.

        True for `Dense`, `EinsumDense` and the convolution layers (including
        their subclasses that keep Keras' own `call`), and for a
        `TimeDistributed` wrapping one of them.

        Example:

        >>> import keras
        >>> PreActivation.supports(keras.layers.Conv2D(3, 1, activation="softmax"))
        True
        >>> PreActivation.supports(keras.layers.SimpleRNN(3))
        False
        """
        return isinstance(layer, keras.layers.Layer) and is_splittable(layer)

    def build(self, input_shape=None):
        super().build(input_shape)
        self.built = True

    def call(self, inputs, training=None, mask=None):
        kwargs = {}
        if self.layer._call_has_training_arg:
            kwargs["training"] = training
        if self.layer._call_has_mask_arg:
            kwargs["mask"] = mask
        # Checked per call: the layer may have been quantized after it was wrapped.
        check_quantization(self.layer)
        twin = linear_twin(self.layer)
        if getattr(twin, "quantization_mode", None) is not None:
            # What the layer's own __call__ dispatches to; it applies the twin's linear activation.
            logits = twin.quantized_call(inputs, **kwargs)
        else:
            logits = twin.call(inputs, **kwargs)
        regularizer = self.layer.activity_regularizer
        if regularizer is not None:
            # The original layer's __call__ adds this on its output; the wrapped layer's
            # __call__ does not run here, so the wrapper adds it, once, on that same tensor.
            self.add_loss(activity_penalty(regularizer, output_activation(self.layer)(logits)))
        return logits

    def compute_mask(self, inputs, previous_mask=None):
        return self.layer.compute_mask(inputs, previous_mask)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


@keras.saving.register_keras_serializable(package="keras_logits")
class LogitsHead(keras.layers.Layer):
    """Turns logits into `{"logits": ..., "probabilities": ...}`.

    Put it at the end of your own model (or in a subclassed model's `call`) so
    the model returns both outputs in one forward pass.

    Under a mixed-precision policy the head computes in float32 (unless `dtype`
    says otherwise), so probabilities do not saturate in float16. A Keras mask
    on the logits (padded tokens) is passed on to both outputs.

    Args:
        activation: `"softmax"` (one class per sample) or `"sigmoid"` (binary
            or multi-label).
        axis: The class axis for softmax.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Example:

    >>> import keras, numpy as np
    >>> inputs = keras.Input((4,))
    >>> logits = keras.layers.Dense(3)(inputs)
    >>> model = keras.Model(inputs, LogitsHead("softmax")(logits))
    >>> outputs = model.predict(np.ones((2, 4)), verbose=0)
    >>> sorted(outputs), outputs["probabilities"].sum(axis=-1).round(5).tolist()
    (['logits', 'probabilities'], [1.0, 1.0])
    """

    def __init__(self, activation: str = "softmax", axis: int = -1, **kwargs):
        check_activation(activation)
        if kwargs.get("dtype") is None and keras.config.dtype_policy().name.startswith("mixed"):
            kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.activation = activation
        self.axis = axis
        self.supports_masking = True
        self.built = True

    def call(self, logits):
        if self.activation == "softmax":
            probabilities = keras.ops.softmax(logits, axis=self.axis)
        else:
            probabilities = keras.ops.sigmoid(logits)
        return {"logits": logits, "probabilities": probabilities}

    def compute_mask(self, inputs, previous_mask=None):
        # Both outputs are positions of the input: a padded step stays padded in each.
        return {"logits": previous_mask, "probabilities": previous_mask}

    def compute_output_shape(self, input_shape):
        return {"logits": input_shape, "probabilities": input_shape}

    def get_config(self):
        return {**super().get_config(), "activation": self.activation, "axis": self.axis}


@keras.saving.register_keras_serializable(package="keras_logits")
class Temperature(keras.layers.Layer):
    """Divides logits by a fixed temperature: `logits / T`.

    `T > 1` softens overconfident probabilities, `T < 1` sharpens them; the
    argmax (the predicted class) never changes. Fit `T` with
    `keras_logits.calibration.TemperatureScaling` and bake it into a model with
    `expose(model, temperature=...)`; the value is part of the layer config, so
    saved models and exports keep it.

    Args:
        temperature: A positive float, or one per class (sigmoid heads).
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Example:

    >>> import keras, numpy as np
    >>> scaled = Temperature(2.0)(np.array([[4.0, -2.0]], "float32"))
    >>> keras.ops.convert_to_numpy(scaled).tolist()
    [[2.0, -1.0]]
    """

    def __init__(self, temperature=1.0, **kwargs):
        values = [float(t) for t in (temperature if isinstance(temperature, (list, tuple)) else [temperature])]
        if not values or not all(t > 0 and t != float("inf") for t in values):
            raise ValueError(f"temperature must be positive and finite, got {temperature!r}.")
        if kwargs.get("dtype") is None and keras.config.dtype_policy().name.startswith("mixed"):
            kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.temperature = values if isinstance(temperature, (list, tuple)) else values[0]
        self.supports_masking = True  # elementwise: the input's mask is the output's
        self.built = True

    def call(self, logits):
        temperature = keras.ops.convert_to_tensor(self.temperature, dtype=logits.dtype)
        return logits / temperature

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="keras_logits")
class MaskedLogits(keras.layers.Layer):
    """Gives masked positions the logit Keras' `Softmax(mask=...)` gives them: a large negative number.

    `keras.layers.Softmax()(scores, mask=mask)` replaces the scores where the
    mask is False (or <= 0.5) by -1e9 (-3e4 in float16) before the softmax, and
    zeroes those probabilities after it. `MaskedLogits()(scores, mask=mask)`
    makes the same replacement, so that `softmax(logits) == probabilities` at
    every position and no score computed from the logits puts mass on padding.
    Where every position along the class axis is masked, Keras' probabilities
    are all 0 while the softmax of these logits is uniform. The output carries
    the mask as its Keras mask, as `Softmax`'s does.

    Args:
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Example:

    >>> import keras, numpy as np
    >>> scores = np.array([[2.0, 1.0, 0.5]], "float32")
    >>> mask = np.array([[True, True, False]])
    >>> logits = MaskedLogits()(scores, mask=mask)
    >>> keras.ops.convert_to_numpy(logits).tolist()
    [[2.0, 1.0, -1000000000.0]]
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.built = True

    def call(self, logits, mask=None):
        if mask is None:
            return logits
        if keras.backend.standardize_dtype(mask.dtype) != "bool":
            mask = keras.ops.greater(mask, keras.ops.cast(0.5, mask.dtype))  # as Keras' Softmax reads it
        return keras.ops.where(mask, logits, _large_negative_number(logits.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape


def _large_negative_number(dtype) -> float:
    """The value keras.layers.Softmax gives masked positions (keras/src/layers/activations/softmax.py)."""
    return -3e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


@keras.saving.register_keras_serializable(package="keras_logits")
class Logits(keras.layers.Layer):
    """Passes logits through unchanged and records the activation that turns them into probabilities.

    `keras_logits.logits_model` ends in it, so that a model which outputs only
    logits still says what they are: `find_head`, `expose`, `ensure_exposed`,
    `LogitsLogger` and `export` read the activation from it and need no
    `activation=`. The call is the identity (no op is added to the graph's
    math); the activation is part of the config, so `.keras` files keep it.

    Args:
        activation: `"softmax"` or `"sigmoid"`: what the model leaves out.
        axis: The class axis (the last one).
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Example:

    >>> import keras, numpy as np, keras_logits
    >>> inputs = keras.Input((4,))
    >>> model = keras.Model(inputs, Logits("sigmoid")(keras.layers.Dense(3)(inputs)))
    >>> keras_logits.find_head(model).activation
    'sigmoid'
    """

    def __init__(self, activation: str = "softmax", axis: int = -1, **kwargs):
        check_activation(activation)
        if kwargs.get("dtype") is None and keras.config.dtype_policy().name.startswith("mixed"):
            kwargs["dtype"] = "float32"  # logits stay float32: no cast back to float16 on the way out
        super().__init__(**kwargs)
        self.activation = activation
        self.axis = axis
        self.supports_masking = True  # identity: a padded position stays padded
        self.built = True

    def call(self, logits):
        return logits

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "activation": self.activation, "axis": self.axis}

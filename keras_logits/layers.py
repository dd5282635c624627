"""Small serializable layers that give a classifier both of its outputs."""

from __future__ import annotations

import threading

import keras

from keras_logits._activations import check_activation

# PreActivation switches the wrapped layer's activation off while it traces the
# layer's call. Replicas of tf.distribute trace in parallel threads; the lock keeps
# one replica from restoring "linear" as the activation another one saved.
_ACTIVATION_SWITCH = threading.RLock()


@keras.saving.register_keras_serializable(package="keras_logits")
class PreActivation(keras.layers.Wrapper):
    """Calls a layer without its activation, sharing its weights.

    `PreActivation(dense)(x)` computes `x @ kernel + bias` of a
    `Dense(..., activation="softmax")` layer: the logits that the fused softmax
    would otherwise hide. The wrapped layer's variables are used, not copied, so
    training through the wrapper trains the original layer.

    Args:
        layer: A built or unbuilt layer with an `activation` attribute (Dense,
            EinsumDense, Conv1D/2D/3D, SeparableConv, ...).
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...). The dtype
            policy defaults to the wrapped layer's.

    Example:

    >>> import keras, numpy as np
    >>> dense = keras.layers.Dense(3, activation="softmax")
    >>> x = np.ones((2, 4), "float32")
    >>> probabilities = dense(x)
    >>> logits = PreActivation(dense)(x)
    >>> difference = keras.ops.convert_to_numpy(keras.ops.softmax(logits) - probabilities)
    >>> bool(np.abs(difference).max() < 1e-6)
    True
    """

    def __init__(self, layer, **kwargs):
        if not hasattr(layer, "activation"):
            raise ValueError(
                f"PreActivation wraps layers with an `activation` attribute (Dense, Conv2D, ...); "
                f"layer '{layer.name}' ({type(layer).__name__}) has none."
            )
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        if layer.built:
            self.built = True

    def build(self, input_shape=None):
        super().build(input_shape)
        self.built = True

    def call(self, inputs, *args, **kwargs):
        with _ACTIVATION_SWITCH:
            saved = self.layer.activation
            self.layer.activation = keras.activations.linear
            try:
                return self.layer.call(inputs, *args, **kwargs)
            finally:
                self.layer.activation = saved

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


@keras.saving.register_keras_serializable(package="keras_logits")
class LogitsHead(keras.layers.Layer):
    """Turns logits into `{"logits": ..., "probabilities": ...}`.

    Put it at the end of your own model (or in a subclassed model's `call`) so
    the model returns both outputs in one forward pass.

    Under a mixed-precision policy the head computes in float32 (unless `dtype`
    says otherwise), so probabilities do not saturate in float16.

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
        self.built = True

    def call(self, logits):
        if self.activation == "softmax":
            probabilities = keras.ops.softmax(logits, axis=self.axis)
        else:
            probabilities = keras.ops.sigmoid(logits)
        return {"logits": logits, "probabilities": probabilities}

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

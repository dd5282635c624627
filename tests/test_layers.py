"""PreActivation and LogitsHead: values, shared weights, serialization."""

import keras
import numpy as np
import pytest
from keras import layers

from keras_logits.layers import LogitsHead, PreActivation

X = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")


def test_pre_activation_computes_the_dense_without_its_softmax():
    dense = layers.Dense(3, activation="softmax")
    dense.build((None, 4))
    kernel, bias = dense.get_weights()
    logits = keras.ops.convert_to_numpy(PreActivation(dense)(X))
    np.testing.assert_allclose(logits, X @ kernel + bias, atol=1e-5)
    assert dense.activation is keras.activations.softmax  # Restored after the call.


def test_pre_activation_of_a_conv_shares_its_variables():
    conv = layers.Conv2D(2, 1, activation="sigmoid")
    wrapper = PreActivation(conv)
    images = np.random.default_rng(2).normal(size=(2, 3, 3, 4)).astype("float32")
    logits = keras.ops.convert_to_numpy(wrapper(images))
    assert [id(v) for v in wrapper.weights] == [id(v) for v in conv.weights]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), keras.ops.convert_to_numpy(conv(images)), atol=1e-6)


def test_pre_activation_refuses_layers_without_activation():
    with pytest.raises(ValueError, match="'pool' \\(MaxPooling1D\\) has none"):
        PreActivation(layers.MaxPooling1D(name="pool"))


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_logits_head_returns_both_outputs(activation):
    outputs = LogitsHead(activation)(X)
    logits, probabilities = (keras.ops.convert_to_numpy(outputs[k]) for k in ("logits", "probabilities"))
    np.testing.assert_array_equal(logits, X)
    if activation == "softmax":
        expected = np.exp(X) / np.exp(X).sum(-1, keepdims=True)
    else:
        expected = 1 / (1 + np.exp(-X))
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)


def test_logits_head_softmax_axis():
    cube = X.reshape(5, 2, 2)
    probabilities = keras.ops.convert_to_numpy(LogitsHead("softmax", axis=1)(cube)["probabilities"])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_logits_head_refuses_other_activations():
    with pytest.raises(ValueError, match="activation='relu' is not supported"):
        LogitsHead("relu")


def test_logits_head_computes_in_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    inputs = keras.Input((4,))
    outputs = LogitsHead("softmax")(layers.Dense(3)(inputs))
    assert outputs["probabilities"].dtype == "float32"
    assert outputs["logits"].dtype == "float32"


def test_model_built_with_logits_head_and_pre_activation_round_trips_in_safe_mode(tmp_path):
    inputs = keras.Input((4,))
    dense = layers.Dense(3, activation="softmax", name="cls")
    hidden = layers.Dense(6, activation="relu")(inputs)
    outputs = LogitsHead("softmax", name="head")(PreActivation(dense, name="pre")(hidden))
    model = keras.Model(inputs, outputs)
    expected = model.predict(X, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    actual = loaded.predict(X, verbose=0)
    for key in ("logits", "probabilities"):
        np.testing.assert_allclose(actual[key], expected[key], atol=1e-6)
    assert loaded.get_layer("head").get_config()["activation"] == "softmax"
    assert isinstance(loaded.get_layer("pre"), PreActivation)


def test_subclassed_model_returns_both_outputs_with_logits_head():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.logits = layers.Dense(3)
            self.head = LogitsHead("sigmoid")

        def call(self, x):
            return self.head(self.logits(x))

    outputs = Net().predict(X, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], 1 / (1 + np.exp(-outputs["logits"])), atol=1e-6)

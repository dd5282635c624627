"""PreActivation, LogitsHead and Temperature: values, shared weights, masks, serialization."""

import keras
import numpy as np
import pytest
from keras import layers

from keras_logits.layers import LogitsHead, PreActivation

X = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")


# Every layer type PreActivation supports, with an input shape that fits it.
SPLITTABLE = {
    "Dense": (lambda **kw: layers.Dense(3, **kw), (4,)),
    "EinsumDense": (lambda **kw: layers.EinsumDense("ab,bc->ac", output_shape=3, bias_axes="c", **kw), (4,)),
    "Conv1D": (lambda **kw: layers.Conv1D(3, 2, **kw), (5, 2)),
    "Conv2D": (lambda **kw: layers.Conv2D(3, 2, **kw), (4, 4, 2)),
    "Conv3D": (lambda **kw: layers.Conv3D(3, 2, **kw), (3, 3, 3, 2)),
    "Conv1DTranspose": (lambda **kw: layers.Conv1DTranspose(3, 2, **kw), (5, 2)),
    "Conv2DTranspose": (lambda **kw: layers.Conv2DTranspose(3, 2, **kw), (4, 4, 2)),
    "Conv3DTranspose": (lambda **kw: layers.Conv3DTranspose(3, 2, **kw), (3, 3, 3, 2)),
    "SeparableConv1D": (lambda **kw: layers.SeparableConv1D(3, 2, **kw), (5, 2)),
    "SeparableConv2D": (lambda **kw: layers.SeparableConv2D(3, 2, **kw), (4, 4, 2)),
    "DepthwiseConv1D": (lambda **kw: layers.DepthwiseConv1D(2, depth_multiplier=2, **kw), (5, 2)),
    "DepthwiseConv2D": (lambda **kw: layers.DepthwiseConv2D(2, depth_multiplier=2, **kw), (4, 4, 2)),
}


@pytest.mark.parametrize("time_distributed", [False, True], ids=["plain", "time_distributed"])
@pytest.mark.parametrize("kind", sorted(SPLITTABLE))
def test_pre_activation_equals_the_same_weights_without_activation_and_leaves_the_layer_alone(kind, time_distributed):
    make, shape = SPLITTABLE[kind]
    rng = np.random.default_rng(3)
    inputs = rng.normal(size=(2, 3, *shape) if time_distributed else (2, *shape)).astype("float32")
    layer, reference = make(activation="softmax"), make(activation=None)
    if time_distributed:
        layer, reference = layers.TimeDistributed(layer), layers.TimeDistributed(reference)
    layer(inputs), reference(inputs)
    reference.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    layer.set_weights(reference.get_weights())
    wrapper = PreActivation(layer)
    probabilities = keras.ops.convert_to_numpy(layer(inputs))
    logits = keras.ops.convert_to_numpy(wrapper(inputs))
    expected = keras.ops.convert_to_numpy(reference(inputs))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(-1, keepdims=True), probabilities, atol=1e-6)
    inner = layer.layer if time_distributed else layer
    assert inner.activation is keras.activations.softmax
    assert [id(v) for v in wrapper.weights] == [id(v) for v in layer.weights]


def test_pre_activation_of_a_conv_shares_its_variables():
    conv = layers.Conv2D(2, 1, activation="sigmoid")
    wrapper = PreActivation(conv)
    images = np.random.default_rng(2).normal(size=(2, 3, 3, 4)).astype("float32")
    logits = keras.ops.convert_to_numpy(wrapper(images))
    assert [id(v) for v in wrapper.weights] == [id(v) for v in conv.weights]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), keras.ops.convert_to_numpy(conv(images)), atol=1e-6)


def test_pre_activation_trains_the_wrapped_layer():
    dense = layers.Dense(3, activation="softmax")
    dense.build((None, 4))
    before = dense.get_weights()[0].copy()
    model = keras.Sequential([keras.Input((4,)), PreActivation(dense)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.train_on_batch(X, np.array([0, 1, 2, 0, 1]))
    assert np.abs(dense.get_weights()[0] - before).max() > 1e-4


@pytest.mark.parametrize(
    "layer, message",
    [
        (layers.MaxPooling1D(name="pool"), "got layer 'pool' \\(MaxPooling1D\\), which is not one of them"),
        (layers.LSTM(3, name="lstm"), "got layer 'lstm' \\(LSTM\\), which is not one of them"),
        (layers.TimeDistributed(layers.SimpleRNN(3, name="rnn"), name="td"),
         "got layer 'td' \\(TimeDistributed\\) wrapping layer 'rnn' \\(SimpleRNN\\), which is not"),
        ("dense", "got a str object, which is not one of them"),
    ],
    ids=["pooling", "lstm", "time_distributed_rnn", "string"],
)
def test_pre_activation_refuses_layers_it_cannot_split(layer, message):
    assert not PreActivation.supports(layer)
    with pytest.raises(ValueError, match=message):
        PreActivation(layer)


def test_pre_activation_refuses_a_subclass_that_overrides_call():
    class ScaledDense(layers.Dense):
        def call(self, inputs, training=None):
            return super().call(inputs) * 2.0

    class PlainDense(layers.Dense):
        pass

    assert PreActivation.supports(PlainDense(3, activation="softmax"))
    with pytest.raises(ValueError, match="'scaled' \\(ScaledDense\\), whose class overrides call\\(\\)"):
        PreActivation(ScaledDense(3, activation="softmax", name="scaled"))


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

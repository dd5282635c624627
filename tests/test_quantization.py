"""Quantized heads (int8, int4, float8): exposed logits are the quantized layer's own pre-activation."""

import keras
import numpy as np
import pytest
from keras import layers

import keras_logits
from keras_logits.layers import PreActivation

X = np.random.default_rng(0).normal(size=(6, 8)).astype("float32")
MODES = ("int8", "int4", "float8")
# Both sides run the same quantized ops on the same CPU; only op fusion may differ.
TOLERANCE = 1e-5

HEADS = {
    "Dense": lambda activation: layers.Dense(5, activation=activation, name="head"),
    "EinsumDense": lambda activation: layers.EinsumDense(
        "ab,bc->ac", output_shape=5, bias_axes="c", activation=activation, name="head"
    ),
}


def _classifier(head: str, activation, seed: int = 0) -> keras.Model:
    inputs = keras.Input((8,))
    hidden = layers.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, HEADS[head](activation)(hidden))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def _quantized_pair(head: str, mode: str, order: str, activation: str = "softmax"):
    """(model, exposed, no-activation twin): the twin has the same weights, quantized the same way."""
    model, twin = _classifier(head, activation), _classifier(head, None)
    if order == "before":
        model.quantize(mode)
    exposed = keras_logits.expose(model)
    if order == "after":
        model.quantize(mode)
    twin.quantize(mode)
    return model, exposed, twin


def _numpy(tensor) -> np.ndarray:
    return keras.ops.convert_to_numpy(tensor)


@pytest.mark.filterwarnings("ignore:Layer InputLayer does not have a `quantize` method")
@pytest.mark.parametrize("order", ["before", "after"], ids=["quantized_before_expose", "quantized_after_expose"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_quantized_head_logits_equal_a_quantized_twin_and_their_softmax_the_models_output(head, mode, order):
    model, exposed, twin = _quantized_pair(head, mode, order)
    outputs, reference = exposed.predict(X, verbose=0), model.predict(X, verbose=0)
    expected_logits = twin.predict(X, verbose=0)
    np.testing.assert_allclose(outputs["logits"], expected_logits, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(_numpy(keras.ops.softmax(outputs["logits"])), reference, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(outputs["probabilities"], reference, atol=TOLERANCE, rtol=0)
    # The quantization is real: the float model gives other logits.
    float_logits = _classifier(head, None).predict(X, verbose=0)
    assert np.abs(float_logits - expected_logits).max() > 1e-4


@pytest.mark.filterwarnings("ignore:Layer InputLayer does not have a `quantize` method")
@pytest.mark.parametrize("mode", MODES)
def test_quantized_sigmoid_head_logits_equal_a_quantized_twin(mode):
    model, exposed, twin = _quantized_pair("Dense", mode, "after", activation="sigmoid")
    outputs = exposed.predict(X, verbose=0)
    np.testing.assert_allclose(outputs["logits"], twin.predict(X, verbose=0), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(outputs["probabilities"], model.predict(X, verbose=0), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_pre_activation_of_a_quantized_layer_takes_the_float_policy_it_was_quantized_from(mode):
    dense = layers.Dense(3, activation="softmax")
    dense(X)
    dense.quantize(mode)
    wrapper = PreActivation(dense)
    assert dense.dtype_policy.quantization_mode == mode
    assert wrapper.dtype_policy.quantization_mode is None and wrapper.dtype_policy.name == "float32"
    np.testing.assert_allclose(
        _numpy(keras.ops.softmax(wrapper(X))), _numpy(dense(X)), atol=TOLERANCE, rtol=0
    )


def _time_distributed_model() -> keras.Model:
    inputs = keras.Input((3, 8))
    hidden = layers.Dense(8, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, layers.TimeDistributed(layers.Dense(5, activation="softmax", name="head"), name="td")(hidden))


@pytest.mark.filterwarnings("ignore:Layer InputLayer does not have a `quantize` method")
def test_quantized_head_inside_time_distributed_is_refused_at_construction_naming_layer_and_mode():
    model = _time_distributed_model()
    model.quantize("int8")
    with pytest.raises(ValueError, match=r"layer 'head' \(Dense\), quantized to 'int8' inside TimeDistributed 'td'") as error:
        keras_logits.expose(model)
    assert "\n" not in str(error.value)


@pytest.mark.filterwarnings("ignore:Layer InputLayer does not have a `quantize` method")
def test_following_the_refusal_advice_leaves_the_time_distributed_head_exact():
    model = _time_distributed_model()
    model.quantize("int8", filters=lambda layer: layer.name != "head")
    inputs = np.random.default_rng(1).normal(size=(2, 3, 8)).astype("float32")
    outputs = keras_logits.expose(model).predict(inputs, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], model.predict(inputs, verbose=0), atol=TOLERANCE, rtol=0)
    assert model.get_layer("hidden").quantization_mode == "int8"
    assert model.get_layer("td").layer.quantization_mode is None


@pytest.mark.filterwarnings("ignore:Layer InputLayer does not have a `quantize` method")
def test_head_quantized_inside_time_distributed_after_expose_is_refused_at_call_time():
    model = _time_distributed_model()
    exposed = keras_logits.expose(model)
    model.quantize("int8")
    with pytest.raises(ValueError, match=r"layer 'head' \(Dense\), quantized to 'int8' inside TimeDistributed"):
        exposed(np.zeros((2, 3, 8), "float32"))


@pytest.mark.filterwarnings("ignore:Layer InputLayer does not have a `quantize` method")
@pytest.mark.parametrize("order", ["before", "after"], ids=["quantized_before_expose", "quantized_after_expose"])
@pytest.mark.parametrize("mode", MODES)
def test_exposed_quantized_model_saved_as_keras_file_loads_with_the_same_outputs(mode, order, tmp_path):
    model, exposed, _ = _quantized_pair("Dense", mode, order)
    expected = exposed.predict(X, verbose=0)
    exposed.save(tmp_path / "exposed.keras")
    loaded = keras.models.load_model(tmp_path / "exposed.keras")
    outputs = loaded.predict(X, verbose=0)
    wrappers = [layer for layer in loaded.layers if isinstance(layer, PreActivation)]
    assert [wrapper.layer.quantization_mode for wrapper in wrappers] == [mode]
    for key in ("logits", "probabilities"):
        np.testing.assert_allclose(outputs[key], expected[key], atol=TOLERANCE, rtol=0)


@pytest.mark.backends("tensorflow")
@pytest.mark.filterwarnings("ignore:Layer InputLayer does not have a `quantize` method")
def test_export_of_an_int8_quantized_model_serves_its_quantized_logits(tmp_path):
    import tensorflow as tf

    model, twin = _classifier("Dense", "softmax"), _classifier("Dense", None)
    model.quantize("int8")
    twin.quantize("int8")
    path = keras_logits.export(model, tmp_path / "export", verify=True)
    served = tf.saved_model.load(str(path)).signatures["serving_default"](tf.constant(X))
    np.testing.assert_allclose(served["logits"].numpy(), twin.predict(X, verbose=0), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(served["probabilities"].numpy(), model.predict(X, verbose=0), atol=TOLERANCE, rtol=0)

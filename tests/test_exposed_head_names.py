"""An exposed multi-head model (outputs '<name>/logits', '<name>/probabilities') takes the original head names.

Every consumer that takes a choice of head (find_head, expose, ensure_exposed, logits_model, export,
LogitsLogger) accepts `head="seg"` on the exposed model, and gives the values the original model's
head "seg" gives: its predict for the probabilities, NumPy math on its own weights for the logits.
"""

import keras
import numpy as np
import pytest

import keras_logits

X = np.random.default_rng(5).normal(size=(3, 4, 4, 2)).astype("float32")


@pytest.fixture(scope="module")
def two_heads():
    keras.utils.set_random_seed(5)
    inputs = keras.Input((4, 4, 2))
    hidden = keras.layers.Conv2D(4, 3, padding="same", name="body")(inputs)
    model = keras.Model(inputs, {
        "seg": keras.layers.Conv2D(3, 1, activation="sigmoid", name="seg")(hidden),
        "cls": keras.layers.Dense(2, activation="softmax", name="cls")(keras.layers.Flatten()(hidden))})
    return model, keras_logits.expose(model)


def _seg_logits_numpy(model):
    """The seg head's logits from its own weights: a 1x1 convolution is a matmul over channels."""
    hidden = keras.Model(model.inputs, model.get_layer("body").output).predict(X, verbose=0).astype("float64")
    kernel, bias = model.get_layer("seg").get_weights()
    return hidden @ kernel[0, 0].astype("float64") + bias


def _assert_seg_values(outputs, model):
    np.testing.assert_allclose(outputs["probabilities"], model.predict(X, verbose=0)["seg"], atol=1e-6)
    np.testing.assert_allclose(outputs["logits"], _seg_logits_numpy(model), atol=1e-5)


def test_find_head_on_an_exposed_model_takes_the_original_name_and_the_exposed_one(two_heads):
    model, exposed = two_heads
    by_original = keras_logits.find_head(exposed, output="seg")
    by_exposed = keras_logits.find_head(exposed, output="seg/probabilities")
    assert by_original.output_name == by_exposed.output_name == "seg/probabilities"
    assert (by_original.layer.name, by_original.activation, by_original.fused, by_original.num_classes) == \
        ("seg", "sigmoid", True, 3)
    assert by_original.describe() == keras_logits.find_head(model, output="seg").describe().replace(
        "output 'seg'", "output 'seg/probabilities'")


def test_a_name_that_is_no_head_of_the_exposed_model_is_still_refused_with_the_choices(two_heads):
    _, exposed = two_heads
    with pytest.raises(ValueError, match=r"no classification output named 'box'.*"
                                         r"\['cls/probabilities', 'seg/probabilities'\]"):
        keras_logits.find_head(exposed, output="box")


@pytest.mark.parametrize("name", ["seg", "seg/probabilities"])
def test_ensure_exposed_with_the_original_name_returns_one_head_equal_to_the_original(two_heads, name):
    model, exposed = two_heads
    single, head = keras_logits.ensure_exposed(exposed, head=name)
    assert sorted(single.output) == ["logits", "probabilities"]
    assert head.layer is model.get_layer("seg")
    assert single.get_layer("seg_logits").layer is model.get_layer("seg")  # the same weights, not a copy
    _assert_seg_values(single.predict(X, verbose=0), model)


def test_expose_and_logits_model_of_an_exposed_model_take_the_original_name(two_heads):
    model, exposed = two_heads
    _assert_seg_values(keras_logits.expose(exposed, head="seg").predict(X, verbose=0), model)
    logits = keras_logits.logits_model(exposed, head="seg").predict(X, verbose=0)
    np.testing.assert_allclose(logits, _seg_logits_numpy(model), atol=1e-5)


def test_a_file_written_from_an_exposed_model_takes_the_original_name(two_heads, tmp_path):
    model, exposed = two_heads
    exposed.save(tmp_path / "exposed.keras")
    loaded = keras.saving.load_model(tmp_path / "exposed.keras")
    single, head = keras_logits.ensure_exposed(loaded, head="seg")
    assert head.output_name == "seg/probabilities"
    _assert_seg_values(single.predict(X, verbose=0), model)


def test_logits_logger_on_an_exposed_model_takes_the_original_name(two_heads, tmp_path):
    model, exposed = two_heads
    from keras_logits._probe_runner import logged_model  # what LogitsLogger(head="seg") logs

    _, probed, head = logged_model(exposed, head="seg")
    assert head.output_name == "seg/probabilities"
    _assert_seg_values(probed.predict(X, verbose=0), model)


@pytest.mark.backends("tensorflow")
def test_export_of_an_exposed_model_takes_the_original_name(two_heads, tmp_path):
    model, exposed = two_heads
    keras_logits.export(exposed, tmp_path / "seg", head="seg", verify=False)
    import tensorflow as tf

    serve = tf.saved_model.load(str(tmp_path / "seg")).signatures["serving_default"]
    (input_name,) = serve.structured_input_signature[1]
    served = serve(**{input_name: tf.constant(X)})
    np.testing.assert_allclose(served["probabilities"].numpy(), model.predict(X, verbose=0)["seg"], atol=1e-6)
    np.testing.assert_allclose(served["logits"].numpy(), _seg_logits_numpy(model), atol=1e-5)

"""Training the exposed model is training the original: the same regularization terms, counted once."""

import keras
import numpy as np
import pytest
from keras import layers, regularizers

import keras_logits

X = np.random.default_rng(11).normal(size=(16, 4)).astype("float32")
Y = np.random.default_rng(12).integers(0, 3, size=16)
RELATIVE = 1e-5


def _classifier(fused: bool, activity: bool = True) -> keras.Model:
    """A small classifier with kernel, bias and activity regularizers on the head (and the layer before)."""
    head_regularizers = dict(
        kernel_regularizer=regularizers.L2(0.05),
        bias_regularizer=regularizers.L1(0.03),
        activity_regularizer=regularizers.L1(0.02) if activity else None,
    )
    inputs = keras.Input((4,))
    hidden = layers.Dense(6, activation="relu", kernel_regularizer=regularizers.L2(0.01),
                          activity_regularizer=regularizers.L2(0.01))(inputs)
    if fused:
        outputs = layers.Dense(3, activation="softmax", name="head", **head_regularizers)(hidden)
    else:
        logits = layers.Dense(3, name="head", **head_regularizers)(hidden)
        outputs = layers.Activation("softmax", name="softmax")(logits)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(13)
    model.set_weights([rng.normal(size=w.shape) for w in model.get_weights()])  # bias not 0: L1 counts
    return model


def _compile(model: keras.Model, exposed: bool) -> keras.Model:
    if exposed:
        loss = {"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    return model


CASES = pytest.mark.parametrize("fused", [True, False], ids=["fused", "separate"])


@CASES
def test_exposed_evaluate_loss_equals_the_original_with_kernel_bias_and_activity_regularizers(fused):
    original = _compile(_classifier(fused), exposed=False)
    exposed = _compile(keras_logits.expose(original), exposed=True)
    without_activity = _compile(_classifier(fused, activity=False), exposed=False)
    without_activity.set_weights(original.get_weights())

    expected = original.evaluate(X, Y, batch_size=16, verbose=0)
    actual = exposed.evaluate(X, Y, batch_size=16, verbose=0)
    np.testing.assert_allclose(actual, expected, rtol=RELATIVE)
    # The head's activity penalty is part of it (a model without it evaluates lower).
    assert expected - without_activity.evaluate(X, Y, batch_size=16, verbose=0) > 1e-3


@CASES
def test_exposed_model_losses_are_the_original_terms_counted_once(fused):
    original = _classifier(fused)
    exposed = keras_logits.expose(original)
    original(X)
    expected = [float(keras.ops.convert_to_numpy(loss)) for loss in original.losses]
    exposed(X)
    actual = [float(keras.ops.convert_to_numpy(loss)) for loss in exposed.losses]
    assert len(actual) == len(expected) == 5  # 2 activity + 2 kernel + 1 bias
    np.testing.assert_allclose(sorted(actual), sorted(expected), rtol=RELATIVE)


def _head_penalties(model: keras.Model) -> list:
    """NumPy: the head's L1 activity penalty on its output (the probabilities) per sample, L2 kernel, L1 bias."""
    hidden_layer, head = model.layers[1], model.get_layer("head")
    kernel, bias = hidden_layer.get_weights()
    hidden = np.maximum(X.astype("float64") @ kernel + bias, 0.0)
    kernel, bias = (w.astype("float64") for w in head.get_weights())
    logits = hidden @ kernel + bias
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    return [0.02 * np.abs(probabilities).sum() / len(X), 0.05 * np.square(kernel).sum(), 0.03 * np.abs(bias).sum()]


def test_fused_head_activity_penalty_is_taken_on_the_probabilities():
    original = _classifier(fused=True)
    exposed = keras_logits.expose(original)
    exposed(X)
    actual = [float(keras.ops.convert_to_numpy(loss)) for loss in exposed.get_layer("head_logits").losses]
    np.testing.assert_allclose(sorted(actual), sorted(_head_penalties(original)), rtol=RELATIVE)


@CASES
def test_one_train_step_of_the_exposed_model_equals_one_of_the_original(fused):
    original = _compile(_classifier(fused), exposed=False)
    copy = _compile(keras.models.clone_model(original), exposed=False)
    copy.set_weights(original.get_weights())
    exposed = _compile(keras_logits.expose(copy), exposed=True)

    expected_loss = original.train_on_batch(X, Y)
    actual_loss = exposed.train_on_batch(X, Y)
    np.testing.assert_allclose(actual_loss, expected_loss, rtol=RELATIVE)
    for actual, expected in zip(copy.get_weights(), original.get_weights()):
        np.testing.assert_allclose(actual, expected, rtol=RELATIVE, atol=1e-6)

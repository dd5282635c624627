"""Keras masks pass through PreActivation, LogitsHead and Temperature: the masked loss through "logits" is the original's."""

import warnings

import keras
import numpy as np
import pytest
from keras import layers
from keras.src.backend.common.masking import get_keras_mask  # Keras exports no getter for the mask it attaches

import keras_logits
from keras_logits.layers import LogitsHead, PreActivation, Temperature

VOCABULARY, CLASSES, STEPS = 20, 4, 7
RELATIVE = 1e-5


def _padded_batch():
    """Token ids with 0 as padding (every row padded differently) and per-token labels."""
    rng = np.random.default_rng(21)
    lengths = np.array([7, 5, 3, 1, 6, 2])
    tokens = rng.integers(1, VOCABULARY, size=(len(lengths), STEPS))
    tokens[np.arange(STEPS) >= lengths[:, None]] = 0
    labels = rng.integers(0, CLASSES, size=tokens.shape)
    return tokens.astype("int32"), labels, tokens != 0


TOKENS, LABELS, MASK = _padded_batch()


def _tagger(time_distributed: bool) -> keras.Model:
    inputs = keras.Input((None,), dtype="int32")
    hidden = layers.Embedding(VOCABULARY, 8, mask_zero=True)(inputs)
    hidden = layers.LSTM(8, return_sequences=True)(hidden)
    head = layers.Dense(CLASSES, activation="softmax", name="tags")
    if time_distributed:
        head = layers.TimeDistributed(head, name="tags")
    model = keras.Model(inputs, head(hidden))
    rng = np.random.default_rng(22)
    model.set_weights([2.0 * rng.normal(size=w.shape) for w in model.get_weights()])  # distinct padded logits
    return model


def _exposed(model: keras.Model, time_distributed: bool) -> keras.Model:
    """`keras_logits.expose`; for TimeDistributed, the same graph built from the package's layers."""
    if not time_distributed:
        return keras_logits.expose(model)
    head, lstm = model.get_layer("tags"), model.layers[-2]
    logits = PreActivation(head, name="tags_logits")(lstm.output)
    return keras.Model(model.inputs, LogitsHead("softmax", name="head")(logits))


@pytest.fixture(scope="module", params=[False, True], ids=["dense", "time_distributed"])
def taggers(request):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _tagger(request.param)
        exposed = _exposed(model, request.param)
        outputs = exposed(TOKENS)
        model(TOKENS)
    return model, exposed, outputs, [str(warning.message) for warning in caught]


def test_exposed_outputs_carry_the_original_mask_without_a_warning(taggers):
    model, exposed, outputs, messages = taggers
    expected = keras.ops.convert_to_numpy(get_keras_mask(model(TOKENS)))
    np.testing.assert_array_equal(expected, MASK)
    for key in ("logits", "probabilities"):
        mask = get_keras_mask(outputs[key])
        assert mask is not None, key
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), MASK)
    assert not [message for message in messages if "destroy the mask" in message]


def _cross_entropy(probabilities, labels, weights):
    picked = np.take_along_axis(probabilities.astype("float64"), labels[..., None], axis=-1)[..., 0]
    return float((-np.log(picked) * weights).sum() / weights.sum())


def test_masked_loss_through_logits_equals_the_original_masked_loss(taggers):
    model, exposed, _, _ = taggers
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy())
    exposed.compile(loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected = model.evaluate(TOKENS, LABELS, batch_size=len(TOKENS), verbose=0)
        actual = exposed.evaluate(TOKENS, LABELS, batch_size=len(TOKENS), verbose=0)
    np.testing.assert_allclose(actual, expected, rtol=RELATIVE)
    assert not [w for w in caught if "destroy the mask" in str(w.message)]

    probabilities = model.predict(TOKENS, verbose=0)
    np.testing.assert_allclose(expected, _cross_entropy(probabilities, LABELS, MASK), rtol=1e-4)
    unmasked = _cross_entropy(probabilities, LABELS, np.ones_like(MASK))
    assert abs(unmasked - expected) > 1e-2  # padding would change the loss if it were counted


def test_temperature_passes_the_mask_on():
    model = _tagger(time_distributed=False)
    exposed = keras_logits.expose(model, temperature=2.0)
    outputs = exposed(TOKENS)
    for key in ("logits", "probabilities"):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(get_keras_mask(outputs[key])), MASK)
    assert isinstance(exposed.get_layer("tags_temperature"), Temperature)

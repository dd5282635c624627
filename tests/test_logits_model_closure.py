"""Closure: a logits_model (logits only, the package's own product) is taken by every consumer without activation=.

References: the original model's own predict (probabilities) and a NumPy softmax/sigmoid of a
no-activation computation with the same weights.
"""

import os

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits.callbacks import LogitsLogger
from keras_logits.distillation import logits_model
from keras_logits._expose import ensure_exposed

ATOL = 1e-6


def _fused(activation, units):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation, name="cls")(hidden), name="fused")


def _separate():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6,))
    scores = keras.layers.Dense(4, name="scores")(keras.layers.Dense(8, activation="relu")(inputs))
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probs")(scores), name="separate")


def _nested():
    keras.utils.set_random_seed(2)
    inner_in = keras.Input((8,))
    head = keras.Model(inner_in, keras.layers.Dense(3, activation="softmax", name="cls")(inner_in), name="head")
    inputs = keras.Input((6,))
    outputs = keras.layers.Flatten()(head(keras.layers.Dense(8, activation="relu")(inputs)))
    return keras.Model(inputs, outputs, name="nested")


def _masked_tagger():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5,), dtype="int32")
    embedded = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="tags")(embedded), name="tagger")


KINDS = {
    "fused_softmax": lambda: _fused("softmax", 4),
    "fused_sigmoid_multilabel": lambda: _fused("sigmoid", 3),
    "separate_softmax": _separate,
    "nested_head": _nested,
    "masked_tagger": _masked_tagger,
}


def _inputs(name):
    rng = np.random.default_rng(0)
    if name == "masked_tagger":
        tokens = rng.integers(1, 10, size=(8, 5))
        tokens[:, 3:] = 0  # padding
        return tokens.astype("int32")
    return rng.normal(size=(8, 6)).astype("float32")


@pytest.fixture(scope="module", params=sorted(KINDS))
def kind(request):
    model = KINDS[request.param]()
    return request.param, model, logits_model(model), _inputs(request.param)


def _activate(logits, activation):
    logits = np.asarray(logits, np.float64)
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def test_find_head_of_a_logits_model_knows_its_activation_without_being_told(kind):
    name, model, logits_only, _ = kind
    head = keras_logits.find_head(logits_only)
    assert head.activation == keras_logits.find_head(model).activation
    assert head.applied_by_model is False
    assert "left out by the model, which outputs the logits of" in head.describe()


def test_expose_of_a_logits_model_gives_the_originals_probabilities(kind):
    name, model, logits_only, x = kind
    outputs = keras_logits.expose(logits_only).predict(x, verbose=0)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=ATOL)
    np.testing.assert_allclose(outputs["logits"], logits_only.predict(x, verbose=0), atol=0)
    activation = keras_logits.find_head(model).activation
    if name != "masked_tagger":  # masked positions: -1e9 logits, as Keras' masked softmax sets them
        np.testing.assert_allclose(_activate(outputs["logits"], activation), expected, atol=ATOL)


def test_ensure_exposed_of_a_logits_model_and_its_safe_mode_reload_agree(kind, tmp_path):
    name, model, logits_only, x = kind
    path = os.path.join(tmp_path, "logits.keras")
    logits_only.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    exposed, head = ensure_exposed(reloaded)
    assert head.activation == keras_logits.find_head(model).activation
    np.testing.assert_allclose(exposed.predict(x, verbose=0)["probabilities"], model.predict(x, verbose=0),
                               atol=ATOL)


@pytest.mark.parametrize("temperature", [None, 2.0], ids=["plain", "through_temperature"])
def test_a_logits_model_cut_by_hand_from_an_exposed_fused_head_is_known_by_its_preactivation(temperature):
    model = _fused("softmax", 4)
    exposed = keras_logits.expose(model, temperature=temperature)
    cut = keras.Model(exposed.inputs, exposed.output["logits"])
    x = _inputs("fused_softmax")
    head = keras_logits.find_head(cut)
    assert (head.activation, head.layer.name, head.fused) == ("softmax", "cls", True)
    logits = _no_activation_logits(model, x) / (temperature or 1.0)
    np.testing.assert_allclose(keras_logits.expose(cut).predict(x, verbose=0)["probabilities"],
                               _activate(logits, "softmax"), atol=ATOL)


def _no_activation_logits(model, x):
    """NumPy: relu(x W1 + b1) W2 + b2 with the model's own weights, the logits its softmax is applied to."""
    w1, b1, w2, b2 = model.get_weights()
    return np.maximum(x.astype(np.float64) @ w1 + b1, 0) @ w2 + b2


def test_an_exposed_model_keeps_one_head_although_its_logits_are_known():
    exposed = keras_logits.expose(_fused("softmax", 4))
    assert list(keras_logits.find_heads(exposed)) == ["probabilities"]
    with pytest.raises(ValueError, match="output 'logits' is the logits of output 'probabilities'; use that one"):
        keras_logits.find_head(exposed, output="logits")


def test_a_contradicting_activation_on_a_logits_model_is_refused_and_the_same_one_accepted():
    logits_only = logits_model(_fused("softmax", 4))
    with pytest.raises(ValueError, match=r"logits of a softmax head .*activation='sigmoid' contradicts it"):
        keras_logits.expose(logits_only, activation="sigmoid")
    assert keras_logits.find_head(logits_only, activation="softmax").activation == "softmax"


def _plain_logits_model():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6,))
    return keras.Model(inputs, keras.layers.Dense(4, name="scores")(inputs), name="plain")


def test_ensure_exposed_takes_activation_for_unrecorded_logits_and_refuses_it_where_applied():
    plain = _plain_logits_model()
    x = _inputs("fused_softmax")
    exposed, head = ensure_exposed(plain, activation="softmax")
    assert head.activation == "softmax" and not head.applied_by_model
    np.testing.assert_allclose(exposed.predict(x, verbose=0)["probabilities"],
                               _activate(plain.predict(x, verbose=0), "softmax"), atol=ATOL)
    softmax_model = _fused("softmax", 4)
    for model in (softmax_model, keras_logits.expose(softmax_model)):
        with pytest.raises(ValueError, match="already applies softmax .*leave out activation="):
            ensure_exposed(model, activation="softmax")


@pytest.fixture(scope="module")
def probe_data():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(48, 6)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + 2 * (x[:, 1] > 0)


@pytest.mark.parametrize("given", [False, True], ids=["logits_model", "plain_logits_with_activation"])
def test_logits_logger_on_a_logits_only_model_logs_the_softmax_of_its_logits(probe_data, tmp_path, given):
    x, y = probe_data
    model = _plain_logits_model() if given else logits_model(_fused("softmax", 4))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logger = LogitsLogger((x[:16], y[:16]), log_dir=tmp_path, activation="softmax" if given else None)
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[logger]).history
    logits = model.predict(x[:16], verbose=0)
    accuracy = np.mean(np.argmax(_activate(logits, "softmax"), axis=-1) == y[:16])
    assert history["probe_logits_accuracy"][-1] == pytest.approx(accuracy)
    assert history["probe_logits_mean"][-1] == pytest.approx(float(np.mean(logits)), abs=1e-6)


def test_logits_logger_refuses_activation_on_a_model_that_applies_one(probe_data):
    x, y = probe_data
    model = _fused("softmax", 4)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    logger = LogitsLogger((x[:16], y[:16]), snapshots=False, activation="softmax")
    with pytest.raises(ValueError, match="already applies softmax"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])


@pytest.mark.backends("tensorflow", "jax")
def test_export_of_a_logits_model_serves_the_originals_probabilities(tmp_path):
    import tensorflow as tf

    model = _fused("softmax", 4)
    x = _inputs("fused_softmax")
    path = keras_logits.export(logits_model(model), tmp_path / "export")  # verified in a fresh process
    loaded = tf.saved_model.load(str(path))
    try:
        served = loaded.serve(tf.constant(x))
    except TypeError:  # exports before issue 19's drop-in serve(x) take the single input as [x]
        served = loaded.serve([tf.constant(x)])
    np.testing.assert_allclose(served["probabilities"].numpy(), model.predict(x, verbose=0), atol=ATOL)

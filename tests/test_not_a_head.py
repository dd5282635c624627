"""Outputs that are not a head: plain logits, values computed from probabilities, layers the package cannot see into.

Each case is built for real, refused with a message that names what was found, and the advice in
the message, followed, gives values checked against the members' own predict or NumPy.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import layers

import keras_logits
from keras_logits.checks import check_model

X = np.random.default_rng(3).normal(size=(8, 6)).astype("float32")


def _member(name):
    return keras.Sequential([keras.Input((6,)), layers.Dense(5, activation="relu"),
                             layers.Dense(3, activation="softmax", name="cls")], name=name)


def _softmax_numpy(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def members():
    return _member("member_a"), _member("member_b")


def _ensemble(members):
    inputs = keras.Input((6,))
    return keras.Model(inputs, layers.Average(name="mean")([member(inputs) for member in members]), name="ensemble")


def _after_softmax(combine):
    inputs = keras.Input((6,))
    probabilities = layers.Dense(3, activation="softmax", name="cls")(inputs)
    return keras.Model(inputs, combine(probabilities), name="net")


class _Sharpen(layers.Layer):
    def call(self, x):
        return x ** 2


PROBABILITY_CASES = {
    "rescaling": lambda p: layers.Rescaling(0.5, name="out")(p),
    "priors": lambda p: layers.Multiply(name="out")([p, keras.ops.convert_to_tensor([[0.2, 0.3, 0.5]])]),
    "custom": lambda p: _Sharpen(name="out")(p),
    "add": lambda p: layers.Add(name="out")([p, layers.Dense(3, activation="sigmoid", name="other")(p)]),
    "concatenate": lambda p: layers.Concatenate(name="out")([p, p]),
    "flatten_then_rescale": lambda p: layers.Rescaling(2.0, name="out")(layers.Flatten()(p)),
}


@pytest.mark.parametrize("case", sorted(PROBABILITY_CASES))
@pytest.mark.parametrize("activation", [None, "softmax"])
def test_an_output_computed_from_a_softmax_is_refused_even_with_activation_given(case, activation):
    model = _after_softmax(PROBABILITY_CASES[case])
    with pytest.raises(ValueError, match=r"computed from 'cls' \(Dense, softmax\).*neither logits nor the "
                                         r"model's probabilities.*no activation= makes them so"):
        keras_logits.expose(model, activation=activation)


def test_an_ensemble_average_is_refused_and_exposing_the_members_gives_their_logits(members):
    model = _ensemble(members)
    with pytest.raises(ValueError, match=r"'mean' \(Average\).*'member_a/cls' \(Dense, softmax\), "
                                         r"'member_b/cls' \(Dense, softmax\).*expose the member models"):
        keras_logits.find_head(model)
    with pytest.raises(ValueError, match="no activation= makes them so"):
        keras_logits.expose(model, activation="softmax")
    # The advice: expose each member. Its logits are its own weights without the softmax.
    for member in members:
        outputs = keras_logits.expose(member).predict(X, verbose=0)
        hidden = np.maximum(X @ member.layers[0].get_weights()[0] + member.layers[0].get_weights()[1], 0)
        kernel, bias = member.get_layer("cls").get_weights()
        np.testing.assert_allclose(outputs["logits"], hidden @ kernel + bias, atol=1e-5)
        np.testing.assert_allclose(outputs["probabilities"], member.predict(X, verbose=0), atol=1e-6)


def test_an_ensemble_whose_members_are_outputs_names_head_and_head_gives_that_member(members):
    inputs = keras.Input((6,))
    a, b = (member(inputs) for member in members)
    model = keras.Model(inputs, {"a": a, "b": b, "mean": layers.Average()([a, b])})
    with pytest.raises(ValueError, match=r"2 classification outputs \['a', 'b'\]"):
        keras_logits.find_head(model)
    assert sorted(keras_logits.find_heads(model)) == ["a", "b"]
    single = keras.Model(inputs, {"a": a, "mean": layers.Average()([a, b])})
    head = keras_logits.find_head(single)  # the only head: the mean is not mistaken for one
    assert head.output_name == "a"
    outputs = keras_logits.expose(model, head="b").predict(X, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], members[1].predict(X, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match=r"no classification output named 'mean'.*'member_a/cls' "
                                         r"\(Dense, softmax\).*head=<one of \['a', 'b'\]>"):
        keras_logits.find_head(model, output="mean")


def test_a_softmax_before_a_plain_dense_is_a_feature_and_the_output_may_be_logits():
    model = _after_softmax(lambda p: layers.Dense(4, name="out")(p))
    with pytest.raises(ValueError, match=r"'out' \(Dense\), which has no activation.*activation='softmax'"):
        keras_logits.find_head(model)
    outputs = keras_logits.expose(model, activation="softmax").predict(X, verbose=0)
    np.testing.assert_allclose(outputs["logits"], model.predict(X, verbose=0), atol=1e-6)


def test_a_softmax_applied_to_probabilities_is_refused():
    model = _after_softmax(lambda p: layers.Activation("softmax", name="again")(p))
    with pytest.raises(ValueError, match=r"applies softmax in layer 'again'.*computed from 'cls' \(Dense, softmax\)"):
        keras_logits.find_head(model)


def test_a_layer_it_cannot_see_into_is_refused_without_activation_and_warned_about_with_it():
    inputs = keras.Input((6,))
    scores = layers.Dense(3, name="scores")(inputs)
    model = keras.Model(inputs, layers.Lambda(lambda t: t * 2.0, name="double")(scores))
    with pytest.raises(ValueError, match=r"'double' \(Lambda\), which keras_logits cannot see into.*only if you "
                                         r"know the output is logits"):
        keras_logits.find_head(model)
    with pytest.warns(UserWarning, match=r"'double' \(Lambda\).*cannot check it"):
        exposed = keras_logits.expose(model, activation="softmax")
    outputs = exposed.predict(X, verbose=0)
    kernel, bias = model.get_layer("scores").get_weights()
    np.testing.assert_allclose(outputs["logits"], 2.0 * (X @ kernel + bias), atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"], _softmax_numpy(outputs["logits"]), atol=1e-6)


def test_a_plain_linear_output_takes_activation_without_a_warning():
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras_logits.layers.Temperature(2.0)(layers.Dense(3, name="scores")(inputs)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        outputs = keras_logits.expose(model, activation="softmax").predict(X, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], _softmax_numpy(model.predict(X, verbose=0)), atol=1e-6)


@pytest.mark.parametrize("case", ["rescaling", "priors"])
def test_check_model_reports_an_output_computed_from_probabilities(case, members):
    model = _after_softmax(PROBABILITY_CASES[case])
    (finding,) = [f for f in check_model(model) if f.code == "output-from-probabilities"]
    assert (finding.severity, finding.output) == ("error", "out")
    assert "'cls' (Dense, softmax)" in finding.message and "expose" in finding.fix
    ensemble = _ensemble(members)
    assert [f.code for f in check_model(ensemble)] == ["output-from-probabilities"]
    assert check_model(members[0]) == []


def test_masking_after_a_softmax_is_refused_for_its_mask_and_ending_at_the_softmax_gives_the_logits():
    keras.utils.set_random_seed(8)
    inputs = keras.Input((6,))
    probabilities = layers.Dense(3, activation="softmax", name="cls")(inputs)
    model = keras.Model(inputs, layers.Masking(name="pad")(probabilities))
    with pytest.raises(ValueError, match=r"'pad' \(Masking\) applied to 'cls' \(Dense, softmax\): its Keras mask is "
                                         r"computed from the probabilities' values.*end the model at the softmax"):
        keras_logits.expose(model)
    ended = keras.Model(inputs, model.get_layer("cls").output)
    outputs = keras_logits.expose(ended).predict(X, verbose=0)
    kernel, bias = model.get_layer("cls").get_weights()
    np.testing.assert_allclose(outputs["logits"], X.astype("float64") @ kernel + bias, atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"], model.predict(X, verbose=0), atol=1e-6)

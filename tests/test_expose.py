"""expose(): both outputs in one pass, shared weights, original untouched, values vs references."""

import keras
import numpy as np
import pytest
from keras import layers

import keras_logits
from keras_logits._graph import model_outputs
from tests.conftest import logit_tolerance

RNG = np.random.default_rng(0)
X6 = RNG.normal(size=(16, 6)).astype("float32")


def _predict(model, x):
    return model.predict(x, verbose=0, batch_size=len(x))


def _assert_outputs(exposed, original, reference, x):
    """probabilities == original's output; logits == same weights without activation."""
    outputs = _predict(exposed, x)
    np.testing.assert_allclose(outputs["probabilities"], _predict(original, x), rtol=0, atol=1e-6)
    expected_logits = _predict(reference, x)
    np.testing.assert_allclose(outputs["logits"], expected_logits, rtol=0, atol=logit_tolerance(expected_logits))
    return outputs


def _dense_classifier(activation="softmax", units=3, name="digits"):
    return keras.Sequential([keras.Input((6,)), layers.Dense(8, activation="relu", name="hidden"),
                             layers.Dense(units, activation=activation, name="cls")], name=name)


def _without_activation(model):
    """Independent reference: the same architecture and weights with a linear last layer."""
    config = model.get_config()
    config["layers"][-1]["config"]["activation"] = "linear"
    reference = keras.Sequential.from_config(config)
    reference.set_weights(model.get_weights())
    return reference


@pytest.mark.parametrize("activation,units", [("softmax", 3), ("sigmoid", 1), ("sigmoid", 4)])
def test_expose_fused_dense_gives_logits_and_identical_probabilities(activation, units):
    model = _dense_classifier(activation, units)
    exposed = keras_logits.expose(model)
    outputs = _assert_outputs(exposed, model, _without_activation(model), X6)
    assert sorted(outputs) == ["logits", "probabilities"]
    assert outputs["logits"].shape == (16, units)


def test_expose_logits_equal_numpy_matmul_of_the_head_weights():
    model = _dense_classifier()
    kernel, bias = model.get_layer("cls").get_weights()
    hidden = np.maximum(X6 @ model.get_layer("hidden").get_weights()[0] + model.get_layer("hidden").get_weights()[1], 0)
    logits = _predict(keras_logits.expose(model), X6)["logits"]
    np.testing.assert_allclose(logits, hidden @ kernel + bias, atol=1e-5)


def test_expose_separate_activation_reuses_the_graph():
    inputs = keras.Input((6,))
    scores = layers.Dense(4, name="scores")(inputs)
    model = keras.Model(inputs, layers.Activation("softmax", name="probs")(scores))
    reference = keras.Model(inputs, scores)
    exposed = keras_logits.expose(model)
    _assert_outputs(exposed, model, reference, X6)
    # Reused: the very same layer objects, nothing added.
    assert {id(layer) for layer in exposed.layers} == {id(layer) for layer in model.layers}


def test_expose_mobilenet_v3_style_conv_flatten_activation():
    inputs = keras.Input((4, 4, 3))
    x = layers.GlobalAveragePooling2D(keepdims=True)(inputs)
    x = layers.Dropout(0.2)(x)
    logits = layers.Conv2D(5, 1, name="Logits")(x)
    flat = layers.Flatten()(logits)
    model = keras.Model(inputs, layers.Activation("softmax", name="Predictions")(flat))
    x = RNG.normal(size=(8, 4, 4, 3)).astype("float32")
    outputs = _assert_outputs(keras_logits.expose(model, features=True), model, keras.Model(inputs, flat), x)
    np.testing.assert_allclose(outputs["features"], x.mean(axis=(1, 2), keepdims=True), atol=1e-6)


def test_expose_replays_shape_only_layers_after_a_fused_head():
    inputs = keras.Input((6,))
    probs = layers.Dense(6, activation="softmax", name="cls")(inputs)
    model = keras.Model(inputs, layers.Reshape((1, 6))(layers.Identity()(probs)))
    exposed = keras_logits.expose(model)
    outputs = _predict(exposed, X6)
    kernel, bias = model.get_layer("cls").get_weights()
    assert outputs["logits"].shape == (16, 1, 6)
    np.testing.assert_allclose(outputs["logits"], (X6 @ kernel + bias).reshape(16, 1, 6), atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"], _predict(model, X6), atol=1e-6)


def test_expose_softmax_layer_on_another_axis_moved_last_by_permute():
    inputs = keras.Input((6,))
    scores = layers.Reshape((3, 4))(layers.Dense(12)(inputs))
    permute = layers.Permute((2, 1))
    model = keras.Model(inputs, permute(layers.Softmax(axis=1)(scores)))
    reference = keras.Model(inputs, layers.Permute((2, 1))(scores))
    outputs = _assert_outputs(keras_logits.expose(model), model, reference, X6)
    np.testing.assert_allclose(outputs["probabilities"].sum(axis=-1), 1.0, atol=1e-5)


def test_expose_nested_head_is_rebuilt_and_shares_weights():
    backbone = keras.Sequential([keras.Input((6,)), layers.Dense(8, activation="relu")], name="backbone")
    head_model = keras.Sequential([keras.Input((8,)), layers.Dense(3, activation="softmax", name="cls")],
                                  name="head_model")
    model = keras.Sequential([keras.Input((6,)), backbone, head_model], name="outer")
    exposed = keras_logits.expose(model, features=True)
    kernel, bias = head_model.get_layer("cls").get_weights()
    features = _predict(backbone, X6)
    outputs = _predict(exposed, X6)
    np.testing.assert_allclose(outputs["features"], features, atol=1e-6)
    np.testing.assert_allclose(outputs["logits"], features @ kernel + bias, atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"], _predict(model, X6), atol=1e-6)
    assert exposed.count_params() == model.count_params()


def test_expose_two_levels_of_nesting_inside_a_functional_model():
    inner = keras.Sequential([keras.Input((8,)), layers.Dense(4, activation="sigmoid", name="tags")], name="inner")
    middle_in = keras.Input((8,))
    middle = keras.Model(middle_in, layers.Dropout(0.1)(inner(middle_in)), name="middle")
    inputs = keras.Input((6,))
    model = keras.Model(inputs, middle(layers.Dense(8, name="trunk")(inputs)))
    outputs = _predict(keras_logits.expose(model), X6)
    trunk = X6 @ model.get_layer("trunk").get_weights()[0] + model.get_layer("trunk").get_weights()[1]
    kernel, bias = inner.get_layer("tags").get_weights()
    np.testing.assert_allclose(outputs["logits"], trunk @ kernel + bias, atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"], _predict(model, X6), atol=1e-6)


def test_expose_with_activation_for_a_model_that_outputs_logits():
    model = keras.Sequential([keras.Input((6,)), layers.Dense(3, name="logits_layer")])
    outputs = _predict(keras_logits.expose(model, activation="softmax"), X6)
    logits = _predict(model, X6)
    np.testing.assert_allclose(outputs["logits"], logits, atol=1e-6)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(outputs["probabilities"], expected / expected.sum(-1, keepdims=True), atol=1e-6)
    outputs = _predict(keras_logits.expose(model, activation="sigmoid"), X6)
    np.testing.assert_allclose(outputs["probabilities"], 1 / (1 + np.exp(-logits)), atol=1e-6)


def _multi_output_model():
    inputs = keras.Input((6,))
    trunk = layers.Dense(8, activation="relu", name="trunk")(inputs)
    return keras.Model(inputs, {
        "digit": layers.Dense(10, activation="softmax", name="digit_dense")(trunk),
        "tags": layers.Dense(3, activation="sigmoid", name="tags_dense")(trunk),
        "box": layers.Dense(4, name="box_dense")(trunk),
    })


def test_expose_multi_output_exposes_each_head_and_passes_other_outputs_through():
    model = _multi_output_model()
    original = _predict(model, X6)
    outputs = _predict(keras_logits.expose(model), X6)
    assert sorted(outputs) == ["box", "digit/logits", "digit/probabilities", "tags/logits", "tags/probabilities"]
    for name in ("digit", "tags"):
        np.testing.assert_allclose(outputs[f"{name}/probabilities"], original[name], atol=1e-6)
        kernel, bias = model.get_layer(f"{name}_dense").get_weights()
        trunk = np.maximum(X6 @ model.get_layer("trunk").get_weights()[0] + model.get_layer("trunk").get_weights()[1], 0)
        np.testing.assert_allclose(outputs[f"{name}/logits"], trunk @ kernel + bias, atol=1e-5)
    np.testing.assert_allclose(outputs["box"], original["box"], atol=1e-6)


def test_expose_head_argument_picks_one_output():
    model = _multi_output_model()
    outputs = _predict(keras_logits.expose(model, head="tags"), X6)
    assert sorted(outputs) == ["logits", "probabilities"]
    np.testing.assert_allclose(outputs["probabilities"], _predict(model, X6)["tags"], atol=1e-6)


def test_expose_unknown_head_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"no classification output named 'box'.*\['digit', 'tags'\]"):
        keras_logits.expose(_multi_output_model(), head="box")


def test_expose_shares_the_same_variables_and_parameter_count():
    model = _dense_classifier()
    exposed = keras_logits.expose(model, features=True)
    assert exposed.count_params() == model.count_params()
    assert {id(v) for v in exposed.weights} == {id(v) for v in model.weights}


def test_fitting_the_exposed_model_trains_the_original_identically():
    model = _dense_classifier()
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    before = [w.copy() for w in model.get_weights()]
    labels = RNG.integers(0, 3, size=16)

    exposed = keras_logits.expose(model)
    exposed.compile(optimizer=keras.optimizers.SGD(0.5),
                    loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    exposed.fit(X6, {"logits": labels}, batch_size=16, epochs=1, verbose=0, shuffle=False)
    twin.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    twin.fit(X6, labels, batch_size=16, epochs=1, verbose=0, shuffle=False)

    for after, trained_twin, old in zip(model.get_weights(), twin.get_weights(), before):
        assert not np.allclose(after, old)
        np.testing.assert_allclose(after, trained_twin, atol=1e-5)


def test_expose_leaves_the_original_model_untouched():
    model = _dense_classifier()
    config, outputs = model.get_config(), _predict(model, X6)
    exposed = keras_logits.expose(model)
    _predict(exposed, X6)
    assert model.get_config() == config
    assert model.get_layer("cls").activation is keras.activations.softmax
    assert len(model.outputs) == 1
    np.testing.assert_array_equal(_predict(model, X6), outputs)


class _CountCalls(layers.Layer):
    """Counts forward passes in a non-trainable variable (real state, no mocks)."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, x):
        self.calls.assign_add(1.0)
        return x


@pytest.mark.parametrize("separate", [False, True])
def test_exposed_model_runs_the_backbone_once_per_batch(separate):
    counter = _CountCalls()
    inputs = keras.Input((6,))
    x = counter(layers.Dense(8)(inputs))
    if separate:
        out = layers.Activation("softmax")(layers.Dense(3)(x))
    else:
        out = layers.Dense(3, activation="softmax")(x)
    exposed = keras_logits.expose(keras.Model(inputs, out), features=True)
    exposed.predict(X6, batch_size=4, verbose=0)
    assert float(counter.calls.numpy()) == 4.0  # 16 samples / batch 4, one pass each


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("separate", [False, True])
def test_expose_returns_float32_outputs_under_mixed_precision(policy, separate):
    keras.config.set_dtype_policy(policy)
    inputs = keras.Input((6,))
    hidden = layers.Dense(8, activation="relu")(inputs)
    if separate:
        out = layers.Activation("softmax")(layers.Dense(3, name="cls")(hidden))
    else:
        out = layers.Dense(3, activation="softmax", name="cls")(hidden)
    model = keras.Model(inputs, out)
    outputs = _predict(keras_logits.expose(model, features=True), X6)
    assert {key: value.dtype for key, value in outputs.items()} == {
        "logits": np.float32, "probabilities": np.float32, "features": np.float32}
    kernel, bias = (w.astype("float32") for w in model.get_layer("cls").get_weights())
    tolerance = 0.05 if policy == "mixed_bfloat16" else 5e-3
    np.testing.assert_allclose(outputs["logits"], outputs["features"] @ kernel + bias, atol=tolerance)
    np.testing.assert_allclose(outputs["probabilities"], _predict(model, X6).astype("float32"), atol=tolerance)


def test_expose_names_the_model_and_avoids_layer_name_clashes():
    inputs = keras.Input((6,))
    x = layers.Dense(4, name="cls_logits")(inputs)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax", name="cls")(x), name="net")
    assert keras_logits.expose(model).name == "net_exposed"
    exposed = keras_logits.expose(model, name="both")
    assert exposed.name == "both"
    assert len({layer.name for layer in exposed.layers}) == len(exposed.layers)


@pytest.mark.parametrize("kind", ["fused", "separate", "nested", "given"])
def test_exposed_model_round_trips_through_keras_file_in_safe_mode(kind, tmp_path):
    if kind == "nested":
        model = keras.Sequential([keras.Input((6,)), keras.Sequential(
            [keras.Input((6,)), layers.Dense(3, activation="softmax")], name="inner")])
    elif kind == "separate":
        model = keras.Sequential([keras.Input((6,)), layers.Dense(3), layers.Activation("sigmoid")])
    else:
        model = _dense_classifier("softmax" if kind == "fused" else None)
    exposed = keras_logits.expose(model, activation="softmax" if kind == "given" else None, features=True)
    path = tmp_path / "exposed.keras"
    exposed.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    expected, actual = _predict(exposed, X6), _predict(loaded, X6)
    assert sorted(actual) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], atol=1e-6)


# ---- per-position heads and masks --------------------------------------------------------------


def test_expose_time_distributed_dense_softmax_tagger_gives_per_step_logits():
    inputs = keras.Input((5, 6))
    wrapper = layers.TimeDistributed(layers.Dense(4, activation="softmax"), name="tagger")
    model = keras.Model(inputs, wrapper(inputs))
    head = keras_logits.find_head(model)
    assert head.layer is wrapper and head.fused and head.num_classes == 4
    x = RNG.normal(size=(3, 5, 6)).astype("float32")
    outputs = _predict(keras_logits.expose(model), x)
    kernel, bias = wrapper.layer.get_weights()
    np.testing.assert_allclose(outputs["logits"], x @ kernel + bias, atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"], _predict(model, x), atol=1e-6)
    described = keras_logits.find_head(keras_logits.expose(model), output="probabilities")
    assert (described.layer, described.fused) == (wrapper, True)


def _pointer_model():
    """A span/pointer head: one score per token, softmax over the tokens that are not padding."""
    tokens = keras.Input((7,), dtype="int32")
    embedded = layers.Embedding(20, 4, name="embed")(tokens)
    scores = layers.Reshape((7,))(layers.Dense(1, name="scorer")(embedded))
    mask = keras.ops.not_equal(tokens, 0)
    return keras.Model(tokens, layers.Softmax(name="pointer")(scores, mask=mask)), embedded


@pytest.fixture(scope="module")
def pointer():
    model, _ = _pointer_model()
    tokens = np.array([[3, 5, 7, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7], [9, 0, 0, 0, 0, 0, 0]], "int32")
    return model, tokens


def test_masked_softmax_logits_give_exactly_the_probabilities_and_no_mass_on_padding(pointer):
    model, tokens = pointer
    outputs = _predict(keras_logits.expose(model), tokens)
    probabilities = _predict(model, tokens)
    np.testing.assert_allclose(outputs["probabilities"], probabilities, atol=1e-6)
    logits = outputs["logits"].astype("float64")
    np.testing.assert_allclose(np.exp(keras_logits.scores.log_softmax(logits)), probabilities, atol=1e-6)
    padding = tokens == 0
    assert np.all(logits[padding] == -1e9)  # the value keras.layers.Softmax gives masked positions
    # Scores computed from the logits see only the real tokens: the entropy of the masked distribution.
    real = np.where(padding, 0.0, probabilities.astype("float64"))
    expected_entropy = -np.sum(np.where(real > 0, real * np.log(np.where(real > 0, real, 1.0)), 0.0), axis=-1)
    np.testing.assert_allclose(keras_logits.scores.entropy(logits), expected_entropy, atol=1e-5)
    assert np.all(keras_logits.scores.probabilities(logits)[padding] == 0.0)


def test_masked_softmax_keeps_the_mask_with_a_temperature_and_through_a_keras_file(pointer, tmp_path):
    model, tokens = pointer
    exposed = keras_logits.expose(model, temperature=2.0)
    outputs = _predict(exposed, tokens)
    np.testing.assert_allclose(np.exp(keras_logits.scores.log_softmax(outputs["logits"].astype("float64"))),
                               outputs["probabilities"], atol=1e-6)
    exposed.save(tmp_path / "pointer.keras")
    loaded = keras.saving.load_model(tmp_path / "pointer.keras", safe_mode=True)
    np.testing.assert_allclose(_predict(loaded, tokens)["logits"], outputs["logits"], atol=1e-6)


def test_exposed_outputs_carry_the_original_outputs_keras_mask():
    tokens = keras.Input((6,), dtype="int32")
    embedded = layers.Embedding(12, 4, mask_zero=True)(tokens)
    fused = keras.Model(tokens, layers.Dense(3, activation="softmax")(embedded))
    separate = keras.Model(tokens, layers.Activation("softmax")(layers.Dense(3)(embedded)))
    for model in (fused, separate):
        assert getattr(model.outputs[0], "_keras_mask", None) is not None
        exposed = keras_logits.expose(model)
        for name, tensor in model_outputs(exposed).items():
            assert getattr(tensor, "_keras_mask", None) is not None, name


def test_a_mask_passed_to_softmax_by_position_is_applied_to_the_logits_too():
    scores_in, mask_in = keras.Input((5,)), keras.Input((5,))
    model = keras.Model([scores_in, mask_in], layers.Softmax()(layers.Dense(5)(scores_in), mask_in))
    scores, mask = RNG.normal(size=(4, 5)).astype("float32"), np.array([[1, 1, 0, 1, 0]] * 4, "float32")
    outputs = keras_logits.expose(model).predict([scores, mask], verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], model.predict([scores, mask], verbose=0), atol=1e-6)
    assert np.all(outputs["logits"][:, [2, 4]] == -1e9)
    np.testing.assert_allclose(np.exp(keras_logits.scores.log_softmax(outputs["logits"].astype("float64"))),
                               outputs["probabilities"], atol=1e-6)


def test_expose_of_a_separate_head_outputs_the_tensors_its_head_carries():
    inputs = keras.Input((4,))
    hidden = layers.Dense(6, name="hidden")(inputs)
    model = keras.Model(inputs, layers.Activation("sigmoid", name="tags")(layers.Dense(3, name="scores")(hidden)))
    last = keras_logits.find_head(model).route[-1]
    exposed = keras_logits.expose(model, features=True)
    # Built from the Head alone: its logits, probabilities and features are reused, no layer is added on the way.
    assert [id(tensor) for tensor in model_outputs(exposed).values()] == [
        id(last.logits), id(last.output_tensor), id(last.features)]

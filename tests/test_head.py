"""find_head / find_heads: the right layer, activation, axis and classes on hand-built models."""

import keras
import numpy as np
import pytest
from keras import layers

import keras_logits


def _functional(body, input_shape=(6,)):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, body(inputs))


def test_find_head_reports_fused_dense_softmax():
    model = keras.Sequential([keras.Input((6,)), layers.Dense(4, activation="relu"),
                              layers.Dense(3, activation="softmax", name="cls")])
    head = keras_logits.find_head(model)
    assert head.layer is model.get_layer("cls")
    assert (head.activation, head.fused, head.axis, head.num_classes, head.path) == ("softmax", True, -1, 3, ())
    assert head.logits_layer is model.get_layer("cls")


def test_find_head_reports_separate_activation_layer_and_its_logits_layer():
    def body(x):
        x = layers.Dense(5, name="scores")(x)
        return layers.Activation("softmax", name="probs")(x)

    model = _functional(body)
    head = keras_logits.find_head(model)
    assert head.layer is model.get_layer("probs")
    assert (head.activation, head.fused, head.num_classes) == ("softmax", False, 5)
    assert head.logits_layer is model.get_layer("scores")


def test_softmax_over_a_class_axis_that_is_not_last_is_refused_with_permute_advice():
    def body(x):
        x = layers.Reshape((4, 3))(layers.Dense(12)(x))
        return layers.Softmax(axis=1, name="per_column")(x)

    with pytest.raises(ValueError, match=r"'per_column' \(Softmax\) normalises over axis 1 \(4 classes\).*"
                                         r"classes on the last axis.*Permute before the activation"):
        keras_logits.find_head(_functional(body))


def test_softmax_over_axis_1_moved_last_by_permute_is_a_head_on_the_last_axis():
    def body(x):
        x = layers.Reshape((4, 3))(layers.Dense(12)(x))
        return layers.Permute((2, 1))(layers.Softmax(axis=1, name="per_column")(x))

    head = keras_logits.find_head(_functional(body))
    assert (head.layer.name, head.axis, head.num_classes, head.fused) == ("per_column", -1, 4, False)


def test_find_head_accepts_a_softmax_op_in_a_functional_graph():
    model = _functional(lambda x: keras.ops.sigmoid(layers.Dense(2)(x)))
    head = keras_logits.find_head(model)
    assert (head.activation, head.fused, head.num_classes) == ("sigmoid", False, 2)


def test_find_head_walks_through_shape_only_layers_like_mobilenet_v3():
    def body(x):
        x = layers.Reshape((1, 1, 6))(x)
        x = layers.Conv2D(7, 1, name="Logits")(x)
        x = layers.Dropout(0.2)(layers.Flatten()(x))
        return layers.Activation("softmax", name="Predictions")(layers.Identity()(x))

    head = keras_logits.find_head(_functional(body))
    assert (head.layer.name, head.logits_layer.name, head.num_classes) == ("Predictions", "Logits", 7)


def test_find_head_walks_shape_only_layers_after_a_fused_activation():
    model = _functional(lambda x: layers.Flatten()(layers.Conv1D(4, 1, activation="sigmoid", name="conv")(
        layers.Reshape((3, 2))(x))))
    head = keras_logits.find_head(model)
    assert (head.layer.name, head.activation, head.fused) == ("conv", "sigmoid", True)


def test_find_head_descends_into_nested_models_and_reports_the_path():
    head_model = keras.Sequential([keras.Input((5,)), layers.Dense(3, activation="softmax", name="cls")],
                                  name="classifier")
    backbone = keras.Sequential([keras.Input((6,)), layers.Dense(5)], name="backbone")
    outer = keras.Sequential([keras.Input((6,)), backbone,
                              keras.Sequential([keras.Input((5,)), head_model], name="wrapper")], name="outer")
    head = keras_logits.find_head(outer)
    assert head.layer.name == "cls"
    assert head.path == ("wrapper", "classifier")


def test_find_head_single_unit_sigmoid_is_binary():
    head = keras_logits.find_head(_functional(lambda x: layers.Dense(1, activation="sigmoid")(x)))
    assert (head.activation, head.num_classes) == ("sigmoid", 1)


def test_find_heads_lists_every_classification_output_and_skips_others():
    inputs = keras.Input((6,))
    outputs = {
        "digit": layers.Dense(10, activation="softmax")(inputs),
        "tags": layers.Dense(4, activation="sigmoid")(inputs),
        "box": layers.Dense(4)(inputs),
    }
    model = keras.Model(inputs, outputs)
    heads = keras_logits.find_heads(model)
    assert {name: (h.activation, h.num_classes) for name, h in heads.items()} == {
        "digit": ("softmax", 10), "tags": ("sigmoid", 4)}
    assert keras_logits.find_head(model, output="tags").activation == "sigmoid"
    with pytest.raises(ValueError, match=r"2 classification outputs \['digit', 'tags'\].*output=<name>"):
        keras_logits.find_head(model)
    with pytest.raises(ValueError, match="no classification output named 'box'"):
        keras_logits.find_head(model, output="box")


def test_find_head_with_given_activation_uses_the_logits_layer():
    model = _functional(lambda x: layers.Dense(3, name="logits_layer")(x))
    head = keras_logits.find_head(model, activation="softmax")
    assert (head.layer.name, head.activation, head.applied_by_model) == ("logits_layer", "softmax", False)


def test_head_is_frozen():
    head = keras_logits.find_head(_functional(lambda x: layers.Dense(3, activation="softmax")(x)))
    with pytest.raises(AttributeError):
        head.activation = "sigmoid"


# ---- errors: say what was found and what to do -------------------------------------------


def test_no_activation_error_names_the_layer_and_suggests_activation():
    model = _functional(lambda x: layers.Dense(3, name="raw")(x))
    with pytest.raises(ValueError, match=r"layer 'raw' \(Dense\), which has no activation.*activation='softmax'"):
        keras_logits.find_head(model)


@pytest.mark.parametrize("activation", ["relu", "tanh", "log_softmax"])
def test_unsupported_activation_error_names_it(activation):
    model = _functional(lambda x: layers.Dense(3, activation=activation, name="out")(x))
    with pytest.raises(ValueError, match=rf"'out' \(Dense\) with activation '{activation}'.*softmax and sigmoid"):
        keras_logits.find_head(model)


def _backend_activation_functions():
    """The active backend's own softmax/sigmoid functions (torch.softmax needs dim=, so only sigmoid)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [(tf.nn.softmax, "softmax"), (tf.nn.sigmoid, "sigmoid"), (tf.math.sigmoid, "sigmoid")]
    if backend == "jax":
        import jax

        return [(jax.nn.softmax, "softmax"), (jax.nn.sigmoid, "sigmoid")]
    import torch

    return [(torch.sigmoid, "sigmoid")]


def test_the_backends_own_activation_functions_are_recognised():
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    for function, name in _backend_activation_functions():
        model = _functional(lambda x: layers.Dense(3, activation=function)(x))
        assert keras_logits.find_head(model).activation == name
        outputs = keras_logits.expose(model).predict(x, verbose=0)
        np.testing.assert_allclose(outputs["probabilities"], model.predict(x, verbose=0), atol=1e-6)


def test_a_custom_function_named_softmax_is_not_taken_for_softmax():
    def softmax(x):  # A temperature-scaled softmax: exposing it as plain softmax would be wrong.
        return keras.ops.softmax(x / 2.0)

    model = _functional(lambda x: layers.Dense(3, activation=softmax, name="out")(x))
    with pytest.raises(ValueError, match=r"activation '[\w.<>]*softmax'.*not a classification activation"):
        keras_logits.find_head(model)


def test_unsupported_custom_callable_activation_is_refused():
    def squash(x):
        return x / (1 + keras.ops.abs(x))

    model = _functional(lambda x: layers.Dense(3, activation=squash, name="out")(x))
    with pytest.raises(ValueError, match=r"activation '[\w.]*squash'.*not a classification activation"):
        keras_logits.find_head(model)


def test_subclassed_model_error_suggests_logits_head():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(np.zeros((1, 6)))
    with pytest.raises(ValueError, match="subclassed keras.Model.*LogitsHead"):
        keras_logits.find_head(model)


def test_unbuilt_sequential_error_says_how_to_build():
    model = keras.Sequential([layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match=r"has not been built.*keras.Input\(shape=...\).*model.build"):
        keras_logits.find_head(model)


def test_given_activation_on_a_model_that_applies_one_is_refused():
    model = _functional(lambda x: layers.Dense(3, activation="softmax", name="cls")(x))
    with pytest.raises(ValueError, match="already applies softmax.*leave out activation="):
        keras_logits.find_head(model, activation="softmax")


@pytest.mark.parametrize("activation", ["relu", "softmax2", None.__class__.__name__])
def test_invalid_activation_argument_is_refused(activation):
    model = _functional(lambda x: layers.Dense(3)(x))
    with pytest.raises(ValueError, match="is not supported; pass 'softmax'.*or 'sigmoid'"):
        keras_logits.find_head(model, activation=activation)


def test_non_model_input_is_refused():
    with pytest.raises(TypeError, match="Expected a keras.Model, got Dense"):
        keras_logits.find_head(layers.Dense(3))


# ---- the package's own layers, and exposed models, through the one walk ---------------------


def _head_fields(head):
    return (head.layer.name, head.fused, head.activation, head.axis, head.num_classes, head.path)


def test_a_model_ending_in_logits_head_has_a_head_and_ensure_exposed_takes_it_as_is():
    from keras_logits._expose import ensure_exposed

    inputs = keras.Input((6,))
    scores = layers.Dense(3, name="scores")(inputs)
    model = keras.Model(inputs, keras_logits.layers.LogitsHead("softmax", name="both")(scores))
    heads = keras_logits.find_heads(model)
    assert list(heads) == ["probabilities"]
    head = keras_logits.find_head(model)
    assert (head.layer.name, head.activation, head.fused, head.num_classes) == ("both", "softmax", False, 3)
    assert head.logits_layer is model.get_layer("scores")
    exposed, found = ensure_exposed(model)
    assert exposed is model and _head_fields(found) == _head_fields(head)
    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
    outputs = keras_logits.expose(model).predict(x, verbose=0)
    assert sorted(outputs) == ["logits", "probabilities"]
    np.testing.assert_allclose(outputs["probabilities"], model.predict(x, verbose=0)["probabilities"], atol=1e-6)


def _nested_fused():
    inner = keras.Sequential([keras.Input((6,)), layers.Dense(4, activation="softmax", name="cls")], name="inner")
    return keras.Sequential([keras.Input((6,)), inner], name="outer")


@pytest.mark.parametrize("kind", ["fused", "sigmoid", "separate", "nested", "logits_head"])
@pytest.mark.parametrize("temperature", [None, 2.0])
def test_an_exposed_model_describes_its_head_exactly_like_the_original(kind, temperature):
    if kind == "nested":
        model = _nested_fused()
    elif kind == "logits_head":
        model = _functional(lambda x: keras_logits.layers.LogitsHead("softmax", name="both")(layers.Dense(3)(x)))
    elif kind == "separate":
        model = _functional(lambda x: layers.Activation("softmax", name="probs")(layers.Dense(3)(x)))
    else:
        activation = "sigmoid" if kind == "sigmoid" else "softmax"
        model = _functional(lambda x: layers.Dense(3, activation=activation, name="cls")(x))
    original = keras_logits.find_head(model)
    exposed = keras_logits.find_head(keras_logits.expose(model, temperature=temperature), output="probabilities")
    assert _head_fields(exposed) == _head_fields(original)
    if kind != "nested":
        assert exposed.layer is original.layer


def test_multi_head_error_names_every_place_that_takes_a_choice():
    inputs = keras.Input((6,))
    model = keras.Model(inputs, {"a": layers.Dense(3, activation="softmax")(inputs),
                                 "b": layers.Dense(2, activation="sigmoid")(inputs)})
    with pytest.raises(ValueError) as error:
        keras_logits.find_head(model)
    for place in ("find_head(model, output=<name>)", "expose()", "ensure_exposed()", "export()",
                  "LogitsLogger()", "--head"):
        assert place in str(error.value)


# ---- which layers are fused heads (and which never are) ------------------------------------


@pytest.mark.parametrize("make", [
    lambda: layers.TimeDistributed(layers.Dense(5, activation="softmax"), name="tagger"),
    lambda: layers.TimeDistributed(layers.Conv1D(5, 1, activation="sigmoid"), name="tagger"),
])
def test_time_distributed_around_a_fused_layer_is_a_fused_head(make):
    inputs = keras.Input((7, 4, 3))
    wrapper = make()
    model = keras.Model(inputs, wrapper(inputs))
    head = keras_logits.find_head(model)
    assert head.layer is wrapper and head.fused and head.num_classes == 5


@pytest.mark.parametrize("make", [
    lambda: layers.LSTM(4, activation="softmax", return_sequences=True, name="rnn"),
    lambda: layers.GRU(4, activation="sigmoid", name="rnn"),
    lambda: layers.SimpleRNN(4, activation="softmax", name="rnn"),
    lambda: layers.Bidirectional(layers.LSTM(2, activation="softmax"), name="rnn"),
])
def test_recurrent_layers_are_never_heads_and_the_refusal_says_what_to_do(make):
    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, make()(inputs))
    advice = r"recurrent layer 'rnn'.*cell's internal activation.*Dense\(num_classes, activation='softmax'\)"
    with pytest.raises(ValueError, match=advice):
        keras_logits.find_head(model)
    with pytest.raises(ValueError, match=advice):
        keras_logits.expose(model, activation="softmax")


class _Squash(layers.Layer):
    """A custom layer with an `activation` attribute: the package cannot know what it applies it to."""

    def __init__(self, activation="softmax", **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)

    def call(self, x):
        return self.activation(x * 2.0)


def test_a_custom_layer_with_an_activation_attribute_is_not_taken_for_a_fused_head():
    model = _functional(lambda x: _Squash(name="squash")(layers.Dense(3)(x)))
    with pytest.raises(ValueError, match=r"'squash' \(_Squash\), which keras_logits cannot see into"):
        keras_logits.find_head(model)


# ---- the class axis after the head ----------------------------------------------------------


def test_softmax_then_reshape_that_splits_the_classes_is_refused():
    model = _functional(lambda x: layers.Reshape((2, 3), name="split")(
        layers.Dense(6, activation="softmax", name="cls")(x)))
    with pytest.raises(ValueError, match=r"'cls' \(Dense\) normalises over 6 classes, but layer 'split' "
                                         r"\(Reshape\).*last axis has 3"):
        keras_logits.find_head(model)


def test_softmax_then_permute_moving_the_classes_is_refused():
    inputs = keras.Input((7, 4))
    model = keras.Model(inputs, layers.Permute((2, 1))(layers.Dense(5, activation="softmax", name="cls")(inputs)))
    with pytest.raises(ValueError, match=r"normalises over axis 1 \(5 classes\).*\(None, 5, 7\).*Permute"):
        keras_logits.find_head(model)


def test_class_axis_kept_last_through_flatten_and_per_pixel_heads_are_accepted():
    inputs = keras.Input((1, 1, 8))
    flat = layers.Flatten()(layers.Conv2D(4, 1, activation="softmax", name="cls")(inputs))
    assert keras_logits.find_head(keras.Model(inputs, flat)).num_classes == 4
    pixels = keras.Input((6, 6, 3))
    per_pixel = keras.Model(pixels, layers.Conv2D(5, 1, activation="softmax", name="seg")(pixels))
    assert (keras_logits.find_head(per_pixel).num_classes, keras_logits.find_head(per_pixel).axis) == (5, -1)


# ---- Keras 2 (tf_keras) models ----------------------------------------------------------------


def test_a_tf_keras_model_is_refused_with_the_h5_route_which_works(tmp_path):
    tf_keras = pytest.importorskip("tf_keras", reason="tf_keras (Keras 2) is not installed")
    old = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, activation="softmax", name="cls")],
                              name="old")
    with pytest.raises(TypeError, match=r"Keras 2 \(tf_keras\).*model.save\('model.h5'\).*"
                                        r"keras.saving.load_model\('model.h5'\).*keras-logits command line"):
        keras_logits.find_head(old)
    with pytest.raises(TypeError, match="Keras 2"):
        keras_logits.expose(old)
    old.save(tmp_path / "model.h5")
    model = keras.saving.load_model(tmp_path / "model.h5")
    x = np.random.default_rng(2).normal(size=(5, 4)).astype("float32")
    outputs = keras_logits.expose(model).predict(x, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], old.predict(x, verbose=0), atol=1e-6)
    kernel, bias = old.get_layer("cls").get_weights()
    np.testing.assert_allclose(outputs["logits"], x @ kernel + bias, atol=1e-5)


# ---- inference-identity layers after the head, path strings, per-position descriptions ----------------


@pytest.mark.parametrize("identity", [lambda: layers.GaussianNoise(0.5), lambda: layers.GaussianDropout(0.3),
                                      lambda: layers.ActivityRegularization(l1=0.01, l2=0.02)],
                         ids=["gaussian_noise", "gaussian_dropout", "activity_regularization"])
def test_a_layer_that_is_the_identity_at_inference_after_the_softmax_keeps_the_head(identity):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, identity()(layers.Dense(3, activation="softmax", name="cls")(inputs)))
    head = keras_logits.find_head(model)
    assert (head.layer.name, head.fused, head.num_classes) == ("cls", True, 3)
    x = np.random.default_rng(4).normal(size=(5, 6)).astype("float32")
    outputs = keras_logits.expose(model).predict(x, verbose=0)
    kernel, bias = model.get_layer("cls").get_weights()
    np.testing.assert_allclose(outputs["logits"], x.astype("float64") @ kernel + bias, atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"], model.predict(x, verbose=0), atol=1e-6)


def test_activity_regularization_after_the_softmax_is_penalised_once_in_the_exposed_model():
    inputs = keras.Input((6,))
    model = keras.Model(inputs, layers.ActivityRegularization(l1=0.01, l2=0.02)(
        layers.Dense(3, activation="softmax", name="cls")(inputs)))
    x = np.random.default_rng(6).normal(size=(5, 6)).astype("float32")
    exposed = keras_logits.expose(model)
    exposed(x, training=True)
    probabilities = keras.ops.convert_to_numpy(model(x)).astype("float64")
    # Keras' ActivityRegularization divides the penalty by the batch size.
    expected = (0.01 * np.abs(probabilities).sum() + 0.02 * np.square(probabilities).sum()) / len(x)
    assert len(exposed.losses) == 1
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(exposed.losses[0])), expected, rtol=1e-5)


@pytest.mark.parametrize("as_path", [str, lambda path: path], ids=["str", "pathlib"])
def test_a_path_is_refused_with_advice_to_load_it_first_which_works(tmp_path, as_path):
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3, activation="softmax", name="cls")])
    model.save(tmp_path / "model.keras")
    with pytest.raises(TypeError, match=r"got \w+, the path '.*model.keras'. Load it first with "
                                        r"keras.saving.load_model\(path\), or run the keras-logits command line"):
        keras_logits.expose(as_path(tmp_path / "model.keras"))
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    x = np.random.default_rng(7).normal(size=(2, 4)).astype("float32")
    np.testing.assert_allclose(keras_logits.expose(loaded).predict(x, verbose=0)["probabilities"],
                               model.predict(x, verbose=0), atol=1e-6)


def test_describe_names_the_positions_of_a_per_position_head_and_not_of_a_per_sample_one():
    pixels = keras.Input((6, 5, 2))
    segmenter = keras.Model(pixels, layers.Conv2D(4, 1, activation="softmax", name="seg")(pixels))
    assert keras_logits.find_head(segmenter).describe() == \
        "softmax (fused into Conv2D 'seg'), 4 classes on axis -1, per-position head, positions (6, 5), output 'seg'"
    tokens = keras.Input((7, 3))
    tagger = keras.Model(tokens, layers.Dense(2, activation="sigmoid", name="tags")(tokens))
    assert keras_logits.find_head(tagger).positions == (7,)
    assert "per-position head, positions (7), output" in keras_logits.find_head(tagger).describe()
    pixel = keras.Input((1, 1, 2))  # Flatten after the head leaves one prediction per sample
    flat = keras.Model(pixel, layers.Flatten()(layers.Conv2D(4, 1, activation="softmax")(pixel)))
    assert keras_logits.find_head(flat).positions == () and "per-position" not in keras_logits.find_head(flat).describe()


def test_head_route_ends_in_the_logits_features_and_mask_expose_builds_from():
    tokens = keras.Input((5, 4))
    mask = keras.Input((5, 3), dtype="bool")
    hidden = layers.Dense(6, name="hidden")(tokens)
    scores = layers.Dense(3, name="scores")(hidden)
    masked = keras.Model([tokens, mask], layers.Softmax(name="probs")(scores, mask=mask))
    last = keras_logits.find_head(masked).route[-1]
    assert (last.kind, last.logits_layer.name) == ("separate", "scores")
    assert last.logits is scores and last.features is hidden and last.mask is mask

    fused_output = layers.Dense(3, activation="softmax", name="cls")(hidden)
    last = keras_logits.find_head(keras.Model(tokens, fused_output)).route[-1]
    # The logits of a fused head do not exist as a tensor yet: expose splits them off the features.
    assert (last.kind, last.logits, last.mask) == ("fused", None, None)
    assert last.input_tensor is hidden and last.features is hidden and last.logits_layer.name == "cls"


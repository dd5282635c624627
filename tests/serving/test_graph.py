"""serving: the class_id layer against NumPy, direct-call outputs, backends that cannot export."""

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits.serving import _graph as serving
from keras_logits._class_ids import class_ids


def graph_of(model):
    exposed, head = keras_logits.ensure_exposed(model)
    return serving.serving_model(exposed, activation=head.activation, axis=head.axis)


@pytest.fixture(scope="module")
def segmentation():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 5, 3), name="image")
    return keras.Model(inputs, keras.layers.Conv2D(4, 1, activation="softmax")(inputs))


def test_class_id_of_a_per_position_head_is_the_numpy_argmax_per_position(segmentation):
    x = np.random.default_rng(0).normal(size=(2, 6, 5, 3)).astype("float32")
    outputs = serving.outputs_of(graph_of(segmentation), {"image": x})
    probabilities = segmentation.predict(x, verbose=0)
    assert outputs["class_id"].shape == (2, 6, 5) and outputs["class_id"].dtype == np.int64
    np.testing.assert_array_equal(outputs["class_id"], class_ids(probabilities, "softmax"))
    np.testing.assert_array_equal(outputs["class_id"], probabilities.argmax(-1))


def test_class_id_of_a_multi_label_head_is_zero_one_at_one_half():
    model = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(5, activation="sigmoid")])
    x = np.random.default_rng(1).normal(size=(7, 4)).astype("float32") * 3
    outputs = serving.outputs_of(graph_of(model), {"x": x})
    np.testing.assert_array_equal(outputs["class_id"], (model.predict(x, verbose=0) >= 0.5).astype("int64"))


def test_a_single_input_serving_model_takes_a_tensor_not_a_list(segmentation):
    graph = graph_of(segmentation)
    assert not isinstance(graph._inputs_struct, (list, tuple))
    two_inputs = [keras.Input((3,), name="a"), keras.Input((2,), name="b")]
    model = keras.Model(two_inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Concatenate()(two_inputs)))
    assert isinstance(graph_of(model)._inputs_struct, list)


@pytest.mark.backends("torch")
def test_torch_backend_cannot_write_a_saved_model_and_says_which_can():
    with pytest.raises(RuntimeError, match="needs the tensorflow or jax backend; the active Keras backend is 'torch'"):
        serving.require_export_backend("tf_saved_model")


def test_missing_packages_are_named_with_the_extra():
    with pytest.raises(ImportError, match=r"needs no_such_package_x, which is not installed.*keras-logits\[onnx\]"):
        serving.require_packages(("numpy", "no_such_package_x"), "onnx", "ONNX export")

"""KerasHub task models: the exposed model answers like task.predict(raw), or is refused with advice.

Small random-init backbones built directly (no presets, no downloads).
"""

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub", reason="KerasHub tasks need the optional keras-hub package")

import keras  # noqa: E402

import keras_logits  # noqa: E402
from keras_logits import hub  # noqa: E402
from tests.conftest import logit_tolerance  # noqa: E402

NUM_CLASSES = 5


def _softmax(logits):
    shifted = np.asarray(logits, np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _tiny_resnet_classifier(activation=None, image_size=(16, 16), scale=1 / 255.0, offset=None):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
        stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block",
        use_pre_activation=False, image_shape=(16, 16, 3),
    )
    converter = keras_hub.layers.ResNetImageConverter(image_size=image_size, scale=scale, offset=offset)
    preprocessor = keras_hub.models.ResNetImageClassifierPreprocessor(image_converter=converter)
    return keras_hub.models.ResNetImageClassifier(
        backbone=backbone, num_classes=NUM_CLASSES, preprocessor=preprocessor, activation=activation,
    )


@pytest.fixture(scope="module")
def image_task():
    return _tiny_resnet_classifier()


@pytest.fixture(scope="module")
def raw_images():
    # Raw 0..255 pixels, larger than the backbone's 16 x 16, as task.predict accepts them.
    return np.random.default_rng(0).integers(0, 256, size=(4, 24, 20, 3)).astype("float32")


VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "jumps"]


@pytest.fixture(scope="module")
def text_task():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY), num_layers=1, num_heads=1, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8,
    )
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    return keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=preprocessor)


def test_exposed_image_task_takes_raw_images_and_matches_task_predict(image_task, raw_images):
    reference = image_task.predict(raw_images, verbose=0)  # logits: KerasHub's default activation=None
    outputs = keras_logits.expose(image_task, activation="softmax").predict(raw_images, verbose=0)
    np.testing.assert_allclose(outputs["logits"], reference, rtol=0, atol=logit_tolerance(reference))
    np.testing.assert_allclose(outputs["probabilities"], _softmax(reference), rtol=0, atol=1e-6)


def test_unfolded_graph_would_be_wrong_on_raw_images(image_task, raw_images):
    # Why folding matters: the task's graph fed raw pixels is far from task.predict.
    reference = image_task.predict(raw_images, verbose=0)
    resized = keras.layers.Resizing(16, 16, crop_to_aspect_ratio=True)(raw_images)
    graph_only = hub.without_preprocessor(image_task).predict(np.asarray(resized), verbose=0)
    assert np.abs(_softmax(graph_only) - _softmax(reference)).max() > 0.05


def test_exposed_image_task_shares_weights_and_trains_the_task(image_task):
    exposed = keras_logits.expose(image_task, activation="softmax")
    task_variables = {id(variable) for variable in image_task.weights}
    assert {id(variable) for variable in exposed.weights} == task_variables
    assert exposed.count_params() == image_task.count_params()


def test_fused_softmax_task_probabilities_equal_task_predict(raw_images):
    task = _tiny_resnet_classifier(activation="softmax", offset=-0.5)
    reference = task.predict(raw_images, verbose=0)
    outputs = keras_logits.expose(task).predict(raw_images, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(_softmax(outputs["logits"]), reference, rtol=0, atol=1e-6)


def test_task_without_resizing_keeps_the_backbone_input_shape(raw_images):
    task = _tiny_resnet_classifier(image_size=None, scale=[1 / 255.0, 2 / 255.0, 1 / 127.5])
    images = raw_images[:, :16, :16]
    reference = task.predict(images, verbose=0)
    exposed = keras_logits.expose(task, activation="softmax")
    assert tuple(exposed.inputs[0].shape) == (None, 16, 16, 3)
    logits = exposed.predict(images, verbose=0)["logits"]
    np.testing.assert_allclose(logits, reference, rtol=0, atol=logit_tolerance(reference))


def test_folded_image_task_round_trips_as_keras_file(image_task, raw_images, tmp_path):
    exposed = keras_logits.expose(image_task, activation="softmax")
    path = tmp_path / "exposed.keras"
    exposed.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(raw_images, verbose=0)["probabilities"],
                               _softmax(image_task.predict(raw_images, verbose=0)), rtol=0, atol=1e-6)


def test_task_with_preprocessor_none_is_exposed_as_its_graph(image_task):
    task = _tiny_resnet_classifier()
    task.preprocessor = None
    images = np.random.default_rng(1).uniform(size=(2, 16, 16, 3)).astype("float32")
    reference = task.predict(images, verbose=0)
    logits = keras_logits.expose(task, activation="softmax").predict(images, verbose=0)["logits"]
    np.testing.assert_allclose(logits, reference, rtol=0, atol=logit_tolerance(reference))


def test_text_task_with_tokenizer_is_refused_naming_without_preprocessor(text_task):
    with pytest.raises(ValueError, match=r"tokenizer .*without_preprocessor\(task\).*task\.preprocessor\(raw\)"):
        keras_logits.expose(text_task, activation="softmax")


def test_following_the_text_advice_gives_task_predict_values(text_task):
    sentences = np.array(["the quick brown fox", "fox jumps", "the the the"])
    reference = text_task.predict(sentences, verbose=0)
    exposed = keras_logits.expose(hub.without_preprocessor(text_task), activation="softmax")
    outputs = exposed.predict(text_task.preprocessor(sentences), verbose=0)
    np.testing.assert_allclose(outputs["logits"], reference, rtol=0, atol=logit_tolerance(reference))
    np.testing.assert_allclose(outputs["probabilities"], _softmax(reference), rtol=0, atol=1e-6)


def test_custom_preprocessor_subclass_is_refused(raw_images):
    task = _tiny_resnet_classifier()

    class Brighter(keras_hub.models.ResNetImageClassifierPreprocessor):
        def call(self, x, y=None, sample_weight=None):
            return super().call(x * 2.0, y, sample_weight)

    task.preprocessor = Brighter(image_converter=task.preprocessor.image_converter)
    with pytest.raises(ValueError, match="not a KerasHub image converter that keras_logits can fold"):
        keras_logits.expose(task, activation="softmax")


def test_models_that_are_not_tasks_pass_through_unchanged():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    assert hub.fold_preprocessor(model) is model


def test_direct_call_matches_predict_and_leaves_batch_norm_statistics(raw_images):
    # Keras' Resizing defaults to training=True; the fold must not switch the task's BatchNormalization to
    # training mode when the exposed model is called directly.
    task = _tiny_resnet_classifier()
    reference = task.predict(raw_images, verbose=0)
    before = [np.array(keras.ops.convert_to_numpy(w)) for w in task.weights]
    exposed = keras_logits.expose(task, activation="softmax")
    logits = keras.ops.convert_to_numpy(exposed(raw_images)["logits"])
    np.testing.assert_allclose(logits, reference, rtol=0, atol=logit_tolerance(reference))
    for old, new in zip(before, task.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))


def test_logits_model_of_an_image_task_takes_raw_images(image_task, raw_images):
    reference = image_task.predict(raw_images, verbose=0)
    logits = keras_logits.logits_model(image_task, activation="softmax").predict(raw_images, verbose=0)
    np.testing.assert_allclose(logits, reference, rtol=0, atol=logit_tolerance(reference))


# TensorFlow only: JAX's SavedModel path (jax2tf) cannot trace Resizing over images of symbolic size.
@pytest.mark.backends("tensorflow")
def test_export_of_an_image_task_serves_task_predict_on_raw_images(raw_images, tmp_path):
    import tensorflow as tf

    task = _tiny_resnet_classifier(activation="softmax")
    reference = task.predict(raw_images, verbose=0)
    keras_logits.export(task, tmp_path / "export")
    serve = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    (input_name,) = serve.structured_input_signature[1]
    outputs = serve(**{input_name: tf.constant(raw_images)})
    np.testing.assert_allclose(outputs["probabilities"].numpy(), reference, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(outputs["class_id"].numpy(), reference.argmax(axis=-1))


@pytest.mark.slow  # a subprocess
def test_cli_predict_on_a_saved_image_task_gives_task_predict(raw_images, tmp_path):
    import os
    import subprocess
    import sys

    task = _tiny_resnet_classifier(activation="softmax")
    task.save(tmp_path / "task.keras")
    np.save(tmp_path / "raw.npy", raw_images)
    completed = subprocess.run(
        [sys.executable, "-m", "keras_logits.cli", "predict", str(tmp_path / "task.keras"), str(tmp_path / "raw.npy"),
         "--output", str(tmp_path / "predictions.npz")],
        capture_output=True, text=True, timeout=600, env={**os.environ},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    written = np.load(tmp_path / "predictions.npz")
    np.testing.assert_allclose(written["probabilities"], task.predict(raw_images, verbose=0), rtol=0, atol=1e-6)

"""TensorFlow at run time: the reference export loaded and called in this process, string inputs."""

from pathlib import Path

import numpy as np
import pytest

from keras_logits import serving
from tests.conftest import logit_tolerance

REFERENCE = Path(__file__).resolve().parents[2] / "saved_models"


@pytest.fixture(scope="module")
def recorded():
    with np.load(REFERENCE / "digits_cnn_samples.npz") as samples:
        return {name: samples[name] for name in samples.files}


def test_the_reference_export_loaded_here_serves_its_recorded_outputs_and_describes_its_signature(recorded):
    import tensorflow as tf

    served = serving.load_saved_model(REFERENCE / "digits_cnn")
    signature = tf.saved_model.load(str(REFERENCE / "digits_cnn")).signatures["serving_default"]
    assert served.inputs == {name: (tuple(spec.shape.as_list()), spec.dtype.name)
                             for name, spec in signature.structured_input_signature[1].items()}
    assert served.outputs == tuple(sorted(signature.structured_outputs))
    outputs = serving.call_saved_model(served, {"image": recorded["image"]})
    np.testing.assert_allclose(outputs["logits"], recorded["logits"], atol=logit_tolerance(recorded["logits"]))
    np.testing.assert_allclose(outputs["probabilities"], recorded["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(outputs["class_id"], recorded["class_id"])


def test_a_dtype_the_signature_does_not_take_is_refused_not_converted(recorded):
    served = serving.load_saved_model(REFERENCE / "digits_cnn")
    with pytest.raises(Exception, match="float64|double"):
        serving.call_saved_model(served, {"image": recorded["image"].astype("float64")})


def test_strings_become_tensorflow_strings_and_other_arrays_pass_unchanged():
    import tensorflow as tf

    text = serving.as_model_input(np.array([["the cat"], ["a dog"]]))
    assert text.dtype == tf.string and text.numpy()[1, 0] == b"a dog"
    numbers = np.zeros((2, 3), "float32")
    assert serving.as_model_input(numbers) is numbers
    assert serving.tensorflow_installed()

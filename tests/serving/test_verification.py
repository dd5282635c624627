"""verification: compare() with its tolerances and tie handling, and both ways of loading an export."""

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits.serving import _verification as verification


def outputs(logits):
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities = (exp / exp.sum(-1, keepdims=True)).astype("float32")
    return {"logits": logits.astype("float32"), "probabilities": probabilities,
            "class_id": probabilities.argmax(-1).astype("int64")}


@pytest.fixture()
def expected():
    return outputs(np.random.default_rng(0).normal(size=(6, 4)) * 100)


def test_tolerances_scale_with_the_logits_and_class_ids_are_exact(expected):
    limits = verification.tolerances(expected)
    assert limits["logits"] == pytest.approx(1e-5 * np.abs(expected["logits"]).max())
    assert limits["probabilities"] == 1e-5 and limits["class_id"] == 0.0


def test_compare_returns_the_max_differences_within_tolerance(expected):
    actual = {name: value.copy() for name, value in expected.items()}
    actual["logits"][2, 1] += 1e-4  # Within 1e-5 of a scale of ~250.
    differences = verification.compare(expected, actual, "tf_saved_model", activation="softmax")
    assert differences["logits"] == pytest.approx(1e-4, rel=1e-2)
    assert differences["probabilities"] == 0.0 and differences["class_id"] == 0.0


def test_compare_refuses_a_difference_beyond_tolerance_naming_the_output(expected):
    actual = {name: value.copy() for name, value in expected.items()}
    actual["probabilities"][0, 0] += 1e-3
    with pytest.raises(RuntimeError, match="output 'probabilities' differs from the in-memory model by 0.001"):
        verification.compare(expected, actual, "onnx", activation="softmax")


def test_compare_refuses_other_outputs_shapes_or_dtypes(expected):
    with pytest.raises(RuntimeError, match="has outputs"):
        verification.compare(expected, {"logits": expected["logits"]}, "onnx", activation="softmax")
    actual = dict(expected, class_id=expected["class_id"].astype("int32"))
    with pytest.raises(RuntimeError, match="output 'class_id' is int32"):
        verification.compare(expected, actual, "onnx", activation="softmax")


def test_a_class_id_that_differs_only_at_a_tie_is_accepted():
    expected = outputs(np.array([[1.0, 1.0, -2.0], [3.0, 0.0, 0.0]]))
    actual = {name: value.copy() for name, value in expected.items()}
    actual["class_id"][0] = 1  # Classes 0 and 1 have equal probabilities: either is right.
    assert verification.compare(expected, actual, "tf_saved_model", activation="softmax")["class_id"] == 1.0


def test_a_class_id_that_differs_without_a_tie_is_refused():
    expected = outputs(np.array([[1.0, 1.0, -2.0], [3.0, 0.0, 0.0]]))
    actual = {name: value.copy() for name, value in expected.items()}
    actual["class_id"][1] = 2
    with pytest.raises(RuntimeError, match="output 'class_id' differs"):
        verification.compare(expected, actual, "tf_saved_model", activation="softmax")


def test_a_sigmoid_class_id_that_differs_only_at_the_threshold_is_accepted_and_elsewhere_refused():
    probabilities = np.array([[0.5 + 1e-7, 0.9], [0.2, 0.5 - 1e-6]], dtype="float32")
    expected = {"probabilities": probabilities, "class_id": (probabilities >= 0.5).astype("int64")}
    at_threshold = dict(expected, class_id=np.array([[0, 1], [0, 0]]))  # 0.5000001 read as just below 0.5
    assert verification.compare(expected, at_threshold, "onnx", activation="sigmoid")["class_id"] == 1.0
    away = dict(expected, class_id=np.array([[1, 0], [0, 0]]))  # 0.9 read as below 0.5: a wrong export
    with pytest.raises(RuntimeError, match="output 'class_id' differs"):
        verification.compare(expected, away, "onnx", activation="sigmoid")


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    if keras.backend.backend() not in ("tensorflow", "jax"):
        pytest.skip(f"SavedModel export needs the tensorflow or jax backend (running {keras.backend.backend()})")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,), name="x"), keras.layers.Dense(4, activation="softmax")])
    path = keras_logits.export(model, tmp_path_factory.mktemp("verification") / "model", verify=False)
    return model, path


@pytest.mark.backends("tensorflow", "jax")
@pytest.mark.parametrize("run", [verification.run_consumer, verification.run_in_process],
                         ids=["fresh_process", "in_process"])
def test_both_consumers_return_the_models_own_outputs(small_export, run):
    model, path = small_export
    x = np.random.default_rng(1).normal(size=(3, 5)).astype("float32")
    got = run(str(path), "tf_saved_model", {"x": x})
    np.testing.assert_allclose(got["probabilities"], model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_array_equal(got["class_id"], model.predict(x, verbose=0).argmax(-1))

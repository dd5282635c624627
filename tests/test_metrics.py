"""keras_logits.metrics against NumPy references, streaming, and inside compiled steps."""

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits import metrics

RNG = np.random.default_rng(0)
LOGITS = (RNG.normal(size=(40, 5)) * 3).astype("float32")
LABELS = RNG.integers(0, 5, size=40)
WEIGHTS = RNG.uniform(0.1, 2.0, size=40).astype("float32")
MULTI_LOGITS = (RNG.normal(size=(40, 4)) * 2).astype("float32")
MULTI_LABELS = RNG.integers(0, 2, size=(40, 4)).astype("float32")


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(x):
    return 1 / (1 + np.exp(-x.astype("float64")))


def numpy_ece(confidence, correct, bins=15, weights=None):
    weights = np.ones_like(confidence) if weights is None else weights
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = index == b
        total += abs(np.sum(weights[in_bin] * confidence[in_bin]) - np.sum(weights[in_bin] * correct[in_bin]))
    return total / weights.sum()


def softmax_reference(logits, labels, weights=None):
    w = np.ones(len(logits)) if weights is None else weights.astype("float64")
    p = softmax(logits.astype("float64"))
    top2 = np.sort(logits, -1)[:, -2:]
    confidence = p.max(-1)
    correct = (p.argmax(-1) == labels).astype(float)
    flat_w = np.repeat(w, logits.shape[1])
    mean = np.average(logits.ravel(), weights=flat_w)
    return {
        "mean": np.average(logits.mean(-1), weights=w),
        "std": np.sqrt(np.average((logits.ravel() - mean) ** 2, weights=flat_w)),
        "margin": np.average(top2[:, 1] - top2[:, 0], weights=w),
        "nonfinite": 0.0,
        "confidence": np.average(confidence, weights=w),
        "entropy": np.average(-(p * np.log(p)).sum(-1), weights=w),
        "ece": numpy_ece(confidence, correct, weights=w),
        "brier": np.average(((p - np.eye(logits.shape[1])[labels]) ** 2).sum(-1), weights=w),
    }


def sigmoid_reference(logits, labels):
    p = sigmoid(logits)
    confidence = np.maximum(p, 1 - p).ravel()
    correct = ((p >= 0.5) == (labels >= 0.5)).astype(float).ravel()
    return {
        "mean": logits.mean(),
        "std": logits.std(),
        "margin": np.abs(logits).mean(),
        "nonfinite": 0.0,
        "confidence": np.maximum(p, 1 - p).mean(),
        "entropy": (-(p * np.log(p) + (1 - p) * np.log(1 - p))).mean(),
        "ece": numpy_ece(confidence, correct),
        "brier": ((p - labels) ** 2).mean(),
    }


def results(metric_list, labels, logits, weights=None, batches=1):
    for chunk in np.array_split(np.arange(len(logits)), batches):
        for metric in metric_list:
            metric.update_state(labels[chunk], logits[chunk], None if weights is None else weights[chunk])
    return {m.name: float(keras.ops.convert_to_numpy(m.result())) for m in metric_list}


@pytest.mark.parametrize("batches", [1, 3])
def test_softmax_metrics_match_numpy(batches):
    got = results(metrics.default_metrics("softmax"), LABELS, LOGITS, batches=batches)
    expected = softmax_reference(LOGITS, LABELS)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=2e-5), name


def test_softmax_metrics_accept_one_hot_labels_and_sample_weights():
    one_hot = np.eye(5, dtype="float32")[LABELS]
    got = results(metrics.default_metrics("softmax"), one_hot, LOGITS, weights=WEIGHTS, batches=2)
    expected = softmax_reference(LOGITS, LABELS, WEIGHTS)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=2e-5), name


@pytest.mark.parametrize("batches", [1, 4])
def test_multi_label_sigmoid_metrics_match_numpy(batches):
    got = results(metrics.default_metrics("sigmoid"), MULTI_LABELS, MULTI_LOGITS, batches=batches)
    for name, value in sigmoid_reference(MULTI_LOGITS, MULTI_LABELS).items():
        assert got[name] == pytest.approx(value, abs=2e-5), name


def test_binary_sigmoid_metrics_match_numpy():
    logits, labels = MULTI_LOGITS[:, :1], MULTI_LABELS[:, :1]
    got = results(metrics.default_metrics("sigmoid"), labels, logits)
    for name, value in sigmoid_reference(logits, labels).items():
        assert got[name] == pytest.approx(value, abs=2e-5), name


def test_probability_metrics_from_probabilities_equal_those_from_logits():
    probabilities = softmax(LOGITS).astype("float32")
    for cls in (metrics.MeanConfidence, metrics.MeanEntropy, metrics.ExpectedCalibrationError, metrics.BrierScore):
        from_logits = results([cls()], LABELS, LOGITS)
        from_probabilities = results([cls(from_logits=False)], LABELS, probabilities)
        assert from_probabilities == pytest.approx(from_logits, abs=1e-5)


def test_nonfinite_counts_nan_and_inf_and_saturated_entropy_stays_finite():
    logits = LOGITS.copy()
    logits[0, 0], logits[3, 2], logits[5, 1] = np.nan, np.inf, -np.inf
    assert results([metrics.NonFiniteLogits()], LABELS, logits)["nonfinite"] == 3
    saturated = np.array([[80.0, -80.0, 0.0]], "float32")
    entropy = results([metrics.MeanEntropy()], LABELS[:1], saturated)["entropy"]
    assert np.isfinite(entropy) and entropy == pytest.approx(0.0, abs=1e-6)


def test_ece_state_has_a_fixed_shape_and_resets():
    ece = metrics.ExpectedCalibrationError(num_bins=7)
    assert [tuple(v.shape) for v in ece.variables] == [(7,), (7,), (7,)]
    results([ece], LABELS, LOGITS)
    ece.reset_state()
    assert float(keras.ops.convert_to_numpy(ece.result())) == 0.0


def test_metrics_round_trip_through_config():
    for metric in metrics.default_metrics("sigmoid", num_bins=9):
        clone = type(metric).from_config(metric.get_config())
        assert clone.get_config() == metric.get_config()
    assert metrics.ExpectedCalibrationError(num_bins=9).get_config()["num_bins"] == 9


def test_invalid_activation_is_refused():
    with pytest.raises(ValueError, match="activation='relu' is not supported"):
        metrics.LogitMean(activation="relu")


@pytest.fixture(scope="module")
def exposed_cnn_and_data(digits):
    from keras_logits.demo import build_digits_cnn

    (x_train, y_train), _ = digits
    return keras_logits.expose(build_digits_cnn()), x_train[:256], y_train[:256]


# On torch, Keras refuses steps_per_execution > 1, and jit_compile (torch.compile) takes a minute
# to compile on 2 CPUs: the torch pass runs the eager case; TensorFlow and JAX run all four.
COMPILED_ONLY = pytest.mark.backends("tensorflow", "jax")


@pytest.mark.parametrize("jit_compile,steps_per_execution", [
    (False, 1),
    pytest.param(True, 1, marks=COMPILED_ONLY),
    pytest.param(False, 4, marks=COMPILED_ONLY),
    pytest.param(True, 4, marks=COMPILED_ONLY),
])
def test_compiled_evaluate_matches_numpy_on_the_model_outputs(exposed_cnn_and_data, jit_compile,
                                                               steps_per_execution):
    exposed, x, y = exposed_cnn_and_data
    exposed.compile(loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                    metrics={"logits": metrics.default_metrics("softmax")},
                    jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    values = exposed.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    logits = exposed.predict(x, verbose=0)["logits"]
    for name, value in softmax_reference(logits, y).items():
        assert values[f"logits_{name}"] == pytest.approx(value, abs=1e-4), name

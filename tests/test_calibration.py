"""Temperature scaling and the reliability report, against SciPy and plain NumPy references."""

import json
import warnings

import keras
import numpy as np
import pytest
from scipy import optimize, special

import keras_logits
from keras_logits.calibration import NotFittedError, TemperatureScaling, reliability_report
from keras_logits.layers import Temperature
from tests.conftest import logit_tolerance

TEMPERATURE_TOLERANCE = 1e-3


def overconfident_logits(num_samples=3000, num_classes=5, scale=4.0, seed=0):
    """Logits whose softmax is too sure of itself: the right class wins only on average."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, num_samples)
    logits = scale * (1.5 * np.eye(num_classes)[labels] + rng.normal(size=(num_samples, num_classes)))
    return logits, labels


def scipy_softmax_temperature(logits, labels, weights=None):
    weights = np.ones(len(labels)) if weights is None else weights

    def nll(temperature):
        log_p = special.log_softmax(logits / temperature, axis=1)
        return -np.sum(weights * log_p[np.arange(len(labels)), labels]) / weights.sum()

    return optimize.minimize_scalar(nll, bounds=(0.01, 100), method="bounded", options={"xatol": 1e-7}).x


def scipy_sigmoid_temperature(logits, targets):
    def nll(temperature):
        z = logits / temperature
        return np.mean(targets * np.logaddexp(0, -z) + (1 - targets) * np.logaddexp(0, z))

    return optimize.minimize_scalar(nll, bounds=(0.01, 100), method="bounded", options={"xatol": 1e-7}).x


def numpy_report(p, labels, num_bins):
    """Reliability numbers computed bin by bin with Python loops."""
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    correct = (predicted == labels).astype(float)
    counts, confidences, accuracies = [], [], []
    for b in range(num_bins):
        low, high = b / num_bins, (b + 1) / num_bins
        in_bin = (confidence >= low) & ((confidence < high) if b < num_bins - 1 else (confidence <= 1.0))
        counts.append(in_bin.sum())
        confidences.append(confidence[in_bin].mean() if in_bin.any() else np.nan)
        accuracies.append(correct[in_bin].mean() if in_bin.any() else np.nan)
    counts = np.array(counts)
    gaps = np.abs(np.array(accuracies) - np.array(confidences))
    one_hot = np.eye(p.shape[1])[labels]
    return {
        "ece": np.nansum(counts * gaps) / len(labels),
        "mce": np.nanmax(gaps),
        "brier": np.mean(np.sum((p - one_hot) ** 2, axis=1)),
        "nll": -np.mean(np.log(p[np.arange(len(labels)), labels])),
        "accuracy": correct.mean(),
        "count": counts,
        "confidence": np.array(confidences),
        "accuracy_per_bin": np.array(accuracies),
    }


# ---- TemperatureScaling ---------------------------------------------------------------------------

def test_softmax_temperature_matches_scipy():
    logits, labels = overconfident_logits()
    scaler = TemperatureScaling().fit(logits, labels)
    assert scaler.temperature_ > 1.5  # overconfident logits need softening
    assert abs(scaler.temperature_ - scipy_softmax_temperature(logits, labels)) < TEMPERATURE_TOLERANCE
    assert scaler.nll_after_ < scaler.nll_before_


def test_one_hot_labels_and_sample_weights_match_scipy():
    logits, labels = overconfident_logits(seed=1)
    weights = np.random.default_rng(1).uniform(0.1, 3.0, len(labels))
    from_ids = TemperatureScaling().fit(logits, labels, sample_weight=weights).temperature_
    from_one_hot = TemperatureScaling().fit(logits, np.eye(5)[labels], sample_weight=weights).temperature_
    reference = scipy_softmax_temperature(logits, labels, weights)
    assert abs(from_ids - reference) < TEMPERATURE_TOLERANCE
    assert abs(from_one_hot - from_ids) < 1e-9


def test_sigmoid_single_and_per_class_temperatures_match_scipy():
    rng = np.random.default_rng(2)
    targets = (rng.uniform(size=(4000, 3)) < 0.4).astype(float)
    scales = np.array([0.5, 3.0, 8.0])  # under-, mildly and very overconfident labels
    logits = scales * (2 * targets - 1 + rng.normal(size=targets.shape))
    shared = TemperatureScaling("sigmoid").fit(logits, targets).temperature_
    assert abs(shared - scipy_sigmoid_temperature(logits, targets)) < TEMPERATURE_TOLERANCE
    per_class = TemperatureScaling("sigmoid", per_class=True).fit(logits, targets).temperature_
    assert per_class.shape == (3,)
    for j in range(3):
        assert abs(per_class[j] - scipy_sigmoid_temperature(logits[:, j], targets[:, j])) < TEMPERATURE_TOLERANCE
    assert per_class[0] < 1 < per_class[2]


def test_binary_sigmoid_with_one_logit_per_sample():
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 2, 2000)
    logits = 6.0 * (2 * targets - 1 + 1.5 * rng.normal(size=2000))
    scaler = TemperatureScaling("sigmoid").fit(logits, targets)
    assert abs(scaler.temperature_ - scipy_sigmoid_temperature(logits, targets)) < TEMPERATURE_TOLERANCE
    assert scaler.predict_proba(logits).shape == (2000, 1)


def test_held_out_ece_of_an_overconfident_keras_model_drops(digits):
    """A real Keras MLP overfitted on 200 digits; calibrated on half of the rest, checked on the other half."""
    (x_train, y_train), _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(256, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x_train[:200], y_train[:200], epochs=300, batch_size=200, verbose=0)
    logits = keras_logits.expose(model).predict(x_train[200:], verbose=0)["logits"]
    labels = y_train[200:]
    half = len(logits) // 2
    scaler = TemperatureScaling().fit(logits[:half], labels[:half])
    before = reliability_report(logits[half:], labels[half:], from_logits=True)
    after = reliability_report(scaler.transform(logits[half:]), labels[half:], from_logits=True)
    assert scaler.temperature_ > 1.0
    assert after.ece < 0.6 * before.ece, (before.ece, after.ece, scaler.temperature_)
    assert after.nll < before.nll
    assert after.accuracy == before.accuracy  # temperature never changes the predicted class


def test_separable_labels_warn_and_stop_at_the_minimum_temperature():
    logits = np.array([[5.0, 0.0], [0.0, 5.0]] * 10)
    with pytest.warns(UserWarning, match="end of the range"):
        scaler = TemperatureScaling().fit(logits, [0, 1] * 10)
    assert scaler.temperature_ == pytest.approx(0.01)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: TemperatureScaling().transform(np.zeros((2, 3))), "not fitted"),
        (lambda: TemperatureScaling(per_class=True), "per_class=True needs activation='sigmoid'"),
        (lambda: TemperatureScaling("relu"), "activation='relu' is not supported"),
        (lambda: TemperatureScaling(min_temperature=2, max_temperature=1), "min_temperature"),
        (lambda: TemperatureScaling().fit(np.zeros((3, 4)), [0, 1]), "3 samples"),
        (lambda: TemperatureScaling().fit(np.zeros((3, 4)), [0, 1, 4]), r"integers in \[0, 4\)"),
        (lambda: TemperatureScaling().fit(np.zeros((3, 4)), [0, 1, 0.5]), "integers"),
        (lambda: TemperatureScaling().fit(np.zeros((3, 4)), np.zeros((3, 5))), "5 columns"),
        (lambda: TemperatureScaling().fit(np.zeros(3), [0, 1, 0]), r"\(num_samples, num_classes\)"),
        (lambda: TemperatureScaling().fit(np.zeros((3, 0)), np.zeros(3)), "zero classes"),
        (lambda: TemperatureScaling().fit(np.array([[np.nan, 0.0]]), [0]), "NaN/inf"),
        (lambda: TemperatureScaling().fit(np.zeros((2, 2)), ["a", "b"]), "must be numbers"),
        (lambda: TemperatureScaling().fit(np.zeros((2, 2)), [0, 1], sample_weight=[0, 0]), "positive sum"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


FITTED_NAMES = {"temperature": "temperature_", "nll_before": "nll_before_", "nll_after": "nll_after_"}


def test_fitted_attributes_end_in_an_underscore_and_the_old_names_read_them_with_a_warning():
    logits, labels = overconfident_logits(num_samples=400, seed=15)
    scaler = TemperatureScaling().fit(logits, labels)
    reference_nll = -np.mean(special.log_softmax(logits, axis=1)[np.arange(len(labels)), labels])
    assert scaler.nll_before_ == pytest.approx(reference_nll, rel=1e-12)
    assert abs(scaler.temperature_ - scipy_softmax_temperature(logits, labels)) < TEMPERATURE_TOLERANCE
    for old, new in FITTED_NAMES.items():
        with pytest.warns(DeprecationWarning, match=f"read {new}"):
            assert getattr(scaler, old) == getattr(scaler, new)
        with pytest.raises(AttributeError, match=f"read-only; fit\\(\\) sets {new}"):
            setattr(scaler, old, 1.0)
    assert "temperature_=" in repr(scaler)


def test_unfitted_scaler_refuses_every_fitted_attribute_and_its_old_name_reads_none():
    scaler = TemperatureScaling()
    for old, new in FITTED_NAMES.items():
        with pytest.raises(NotFittedError, match=r"not fitted yet; call fit\(logits, labels\) first"):
            getattr(scaler, new)
        assert not hasattr(scaler, new)  # an AttributeError too, as scikit-learn's NotFittedError
        with pytest.warns(DeprecationWarning):
            assert getattr(scaler, old) is None
    assert issubclass(NotFittedError, ValueError)
    with pytest.raises(NotFittedError):
        scaler.layer()
    with pytest.raises(AttributeError, match="no attribute 'temprature_'"):
        scaler.temprature_


# ---- the Temperature layer, expose and export --------------------------------------------------

def test_temperature_layer_round_trips_through_config_and_rejects_bad_values():
    layer = Temperature([1.0, 2.0, 4.0], name="t")
    clone = Temperature.from_config(layer.get_config())
    out = keras.ops.convert_to_numpy(clone(np.array([[4.0, 4.0, 4.0]], "float32")))
    np.testing.assert_allclose(out, [[4.0, 2.0, 1.0]])
    for bad in (0.0, -1.0, float("inf"), []):
        with pytest.raises(ValueError, match="positive and finite"):
            Temperature(bad)


def sigmoid_multilabel_model():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid", name="tags")(hidden))


def test_expose_with_temperature_divides_the_logits_and_keeps_the_original_weights(tmp_path):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4), keras.layers.Softmax(name="probs")])
    x = np.random.default_rng(5).normal(size=(32, 6)).astype("float32")
    reference = keras_logits.expose(model).predict(x, verbose=0)["logits"]
    scaler = TemperatureScaling()
    scaler.temperature_ = 2.5  # set by hand, as scikit-learn allows for fitted attributes
    calibrated = keras_logits.expose(model, temperature=scaler)
    outputs = calibrated.predict(x, verbose=0)
    np.testing.assert_allclose(outputs["logits"], reference / 2.5, atol=logit_tolerance(reference))
    np.testing.assert_allclose(outputs["probabilities"], special.softmax(reference / 2.5, axis=1), atol=1e-6)
    assert {id(v) for v in model.weights} <= {id(v) for v in calibrated.weights}

    calibrated.save(tmp_path / "calibrated.keras")
    loaded = keras.saving.load_model(tmp_path / "calibrated.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["probabilities"], outputs["probabilities"], atol=1e-7)


def test_expose_with_per_class_temperatures_on_a_sigmoid_head():
    model = sigmoid_multilabel_model()
    x = np.random.default_rng(6).normal(size=(16, 6)).astype("float32")
    reference = keras_logits.expose(model).predict(x, verbose=0)["logits"]
    temperatures = np.array([0.5, 1.0, 3.0])
    outputs = keras_logits.expose(model, temperature=temperatures).predict(x, verbose=0)
    np.testing.assert_allclose(outputs["logits"], reference / temperatures, atol=logit_tolerance(reference))
    np.testing.assert_allclose(outputs["probabilities"], special.expit(reference / temperatures), atol=1e-6)


def test_expose_refuses_temperatures_that_do_not_fit_the_head():
    softmax_model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="for sigmoid heads"):
        keras_logits.expose(softmax_model, temperature=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="2 temperatures for a head of 3 classes"):
        keras_logits.expose(sigmoid_multilabel_model(), temperature=[1.0, 2.0])
    with pytest.raises(ValueError, match="not fitted"):
        keras_logits.expose(softmax_model, temperature=TemperatureScaling())
    inputs = keras.Input((6,))
    two_heads = keras.Model(inputs, {"a": keras.layers.Dense(3, activation="softmax")(inputs),
                                     "b": keras.layers.Dense(2, activation="softmax")(inputs)})
    with pytest.raises(ValueError, match="pick one with head="):
        keras_logits.expose(two_heads, temperature=2.0)
    assert sorted(keras_logits.expose(two_heads, temperature=2.0, head="a").output) == ["logits", "probabilities"]


@pytest.mark.slow
@pytest.mark.backends("tensorflow", "jax")
def test_export_bakes_the_temperature_in_and_records_it(tmp_path, trained_digits_cnn, digits):
    _, (x_test, _) = digits
    path = keras_logits.export(trained_digits_cnn, tmp_path / "calibrated", temperature=1.7)
    manifest = keras_logits.read_manifest(path)
    assert manifest["head"]["temperature"] == 1.7
    assert manifest["verification"]["max_abs_difference"]["probabilities"] <= 1e-5
    with pytest.raises(ValueError, match="already exposed"):
        keras_logits.export(keras_logits.expose(trained_digits_cnn), tmp_path / "again", temperature=1.7)


# ---- reliability_report --------------------------------------------------------------------------

def test_report_equals_a_loop_over_bins():
    logits, labels = overconfident_logits(num_samples=500, seed=7)
    p = special.softmax(logits, axis=1)
    report = reliability_report(logits, labels, num_bins=15, from_logits=True)
    reference = numpy_report(p, labels, 15)
    for key in ("ece", "mce", "brier", "nll", "accuracy"):
        assert getattr(report, key) == pytest.approx(reference[key], rel=1e-9, abs=1e-12), key
    np.testing.assert_array_equal(report.bin_count, reference["count"])
    np.testing.assert_allclose(report.bin_confidence, reference["confidence"], rtol=1e-12)
    np.testing.assert_allclose(report.bin_accuracy, reference["accuracy_per_bin"], rtol=1e-12)
    from_probabilities = reliability_report(p, labels, num_bins=15, from_logits=False)
    assert from_probabilities.ece == pytest.approx(report.ece, abs=1e-12)
    assert from_probabilities.nll == pytest.approx(report.nll, rel=1e-6)


def test_report_handles_empty_bins():
    p = np.array([[0.95, 0.05], [0.9, 0.1], [0.55, 0.45]])
    report = reliability_report(p, [0, 1, 0], num_bins=10, from_logits=False)
    assert report.bin_count.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert np.isnan(report.bin_confidence[:5]).all() and np.isnan(report.bin_accuracy[6])
    assert report.ece == pytest.approx((abs(0.55 - 1) + abs(0.925 * 2 - 1)) / 3)
    assert report.mce == pytest.approx(0.45)
    text = report.table()
    assert text.count(" - ") >= 8 and "ECE 0.4333" in text
    encoded = json.loads(json.dumps(report.as_dict()))
    assert encoded["bins"]["confidence"][0] is None and encoded["bins"]["count"][9] == 2


def test_sigmoid_report_counts_every_label_decision():
    p = np.array([[0.9, 0.2], [0.4, 0.7]])
    targets = np.array([[1, 0], [1, 1]])
    report = reliability_report(p, targets, num_bins=5, activation="sigmoid", from_logits=False)
    assert report.accuracy == pytest.approx(0.75)
    assert report.brier == pytest.approx(np.mean((p - targets) ** 2))
    expected_nll = -np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p))
    assert report.nll == pytest.approx(expected_nll)


def test_report_ece_equals_the_in_step_metric():
    logits, labels = overconfident_logits(num_samples=256, seed=8)
    metric = keras_logits.metrics.ExpectedCalibrationError(num_bins=15)
    metric.update_state(labels, logits.astype("float32"))
    report = reliability_report(logits.astype("float32"), labels, from_logits=True)
    assert float(metric.result()) == pytest.approx(report.ece, abs=1e-5)


def test_explicit_from_logits_reads_probability_looking_logits_as_logits():
    """Logits in [0, 1] whose rows sum to 1: the deprecated guess takes them for probabilities, wrongly."""
    rng = np.random.default_rng(16)
    logits = rng.dirichlet(np.ones(4), size=200)
    labels = rng.integers(0, 4, 200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explicit = reliability_report(logits, labels, from_logits=True)
    reference = numpy_report(special.softmax(logits, axis=1), labels, 15)
    for key in ("ece", "mce", "brier", "nll"):
        assert getattr(explicit, key) == pytest.approx(reference[key], rel=1e-9, abs=1e-12), key
    with pytest.warns(DeprecationWarning, match="guessed that these values are probabilities.*from_logits=True"):
        guessed = reliability_report(logits, labels)
    assert guessed.ece == pytest.approx(numpy_report(logits, labels, 15)["ece"], rel=1e-9)
    assert guessed.ece != pytest.approx(explicit.ece, rel=1e-3)


def test_explicit_from_logits_false_never_guesses_and_refuses_values_outside_zero_one():
    p = np.array([[0.7, 0.2], [0.1, 0.6]])            # rows do not sum to 1: the guess would say logits
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = reliability_report(p, [0, 0], num_bins=10, from_logits=False)
    assert report.ece == pytest.approx((abs(0.7 - 1) + abs(0.6 - 0)) / 2)
    with pytest.warns(DeprecationWarning, match="guessed that these values are logits"):
        reliability_report(p, [0, 0], num_bins=10)
    with pytest.raises(ValueError, match="Pass from_logits=True if they are logits"):
        reliability_report(p + 1.0, [0, 0], from_logits=False)


def test_report_and_probe_summary_share_one_ece_brier_and_accuracy():
    pixels, ids, weights = per_pixel_problem(seed=17)
    report = reliability_report(pixels, ids, from_logits=True, ignore_class=255, sample_weight=weights)
    summary = keras_logits.statistics.summarize(pixels, ids, activation="softmax", ignore_class=255,
                                                sample_weight=weights)
    for key in ("ece", "brier", "accuracy"):
        assert getattr(report, key) == pytest.approx(summary[key], rel=1e-12), key


@pytest.mark.parametrize(
    "values, labels, kwargs, message",
    [
        (np.zeros((0, 3)), [], {"from_logits": True}, "at least one sample"),
        (np.full((2, 2), 0.5), [0, 1], {"num_bins": 0, "from_logits": False}, "positive integer"),
        (np.array([[2.0, -1.0]]), [0], {"from_logits": False}, "outside"),
        (np.full((2, 2), 0.5), [[0, 1, 1]], {"from_logits": False}, "2 samples"),
    ],
)
def test_report_bad_input(values, labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        reliability_report(values, labels, **kwargs)


def test_no_warning_when_the_fit_is_inside_the_range():
    logits, labels = overconfident_logits(num_samples=300, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TemperatureScaling().fit(logits, labels)


# ---- per position: pixels and tokens -----------------------------------------------------------

def per_pixel_problem(seed=10):
    """Overconfident per-pixel logits (3 images of 10x10, 5 classes), void pixels and pixel weights."""
    logits, labels = overconfident_logits(num_samples=300, seed=seed)
    pixels, ids = logits.reshape(3, 10, 10, 5), labels.reshape(3, 10, 10).copy()
    ids[0, :4] = 255
    weights = np.random.default_rng(seed).uniform(0.2, 2.0, size=(3, 10, 10))
    return pixels, ids, weights


def test_per_pixel_temperature_with_ignore_class_and_weights_matches_scipy_on_the_kept_pixels():
    pixels, ids, weights = per_pixel_problem()
    keep = ids != 255
    scaler = TemperatureScaling().fit(pixels, ids, sample_weight=weights, ignore_class=255)
    reference = scipy_softmax_temperature(pixels[keep], ids[keep], weights[keep])
    assert abs(scaler.temperature_ - reference) < TEMPERATURE_TOLERANCE
    assert scaler.transform(pixels).shape == pixels.shape
    np.testing.assert_allclose(scaler.predict_proba(pixels), special.softmax(pixels / scaler.temperature_, axis=-1),
                               rtol=1e-12)


def test_masked_tokens_temperature_equals_the_fit_on_the_unpadded_tokens():
    pixels, ids, _ = per_pixel_problem(seed=11)
    tokens, tags = pixels.reshape(6, 50, 5), np.where(ids == 255, 0, ids).reshape(6, 50)
    mask = np.arange(50)[None, :] < np.array([50, 10, 33, 1, 48, 20])[:, None]
    masked = TemperatureScaling().fit(tokens, tags, mask=mask).temperature_
    assert masked == pytest.approx(TemperatureScaling().fit(tokens[mask], tags[mask]).temperature_, abs=1e-9)


def test_per_pixel_report_equals_the_flattened_loop_over_bins():
    pixels, ids, _ = per_pixel_problem(seed=12)
    keep = ids != 255
    report = reliability_report(pixels, ids, from_logits=True, ignore_class=255)
    reference = numpy_report(special.softmax(pixels[keep], axis=1), ids[keep], 15)
    for key in ("ece", "mce", "brier", "nll", "accuracy"):
        assert getattr(report, key) == pytest.approx(reference[key], rel=1e-9, abs=1e-12), key
    np.testing.assert_array_equal(report.bin_count, reference["count"])
    assert report.num_samples == keep.sum()


def test_weighted_report_equals_repeating_the_predictions():
    pixels, ids, _ = per_pixel_problem(seed=13)
    labels = np.where(ids == 255, 0, ids)
    counts = np.random.default_rng(13).integers(0, 4, size=labels.shape)   # integer weights: repeats
    weighted = reliability_report(pixels, labels, from_logits=True, sample_weight=counts)
    repeated = reliability_report(np.repeat(pixels.reshape(-1, 5), counts.ravel(), axis=0),
                                  np.repeat(labels.ravel(), counts.ravel()), from_logits=True)
    for key in ("ece", "mce", "brier", "nll", "accuracy"):
        assert getattr(weighted, key) == pytest.approx(getattr(repeated, key), rel=1e-9, abs=1e-12), key
    np.testing.assert_allclose(weighted.bin_accuracy, repeated.bin_accuracy, rtol=1e-12)


def test_per_token_sigmoid_report_counts_every_unpadded_label_decision():
    rng = np.random.default_rng(14)
    targets = (rng.uniform(size=(4, 6, 3)) < 0.4).astype(float)
    logits = 3.0 * (2 * targets - 1 + rng.normal(size=targets.shape))
    mask = np.arange(6)[None, :] < np.array([6, 2, 4, 1])[:, None]
    report = reliability_report(logits, targets, activation="sigmoid", from_logits=True, mask=mask)
    flat = reliability_report(logits[mask], targets[mask], activation="sigmoid", from_logits=True)
    assert report.as_dict() == flat.as_dict()


def test_per_position_calibration_refusals():
    pixels, ids, _ = per_pixel_problem()
    with pytest.raises(ValueError, match="pass ignore_class=255"):
        reliability_report(pixels, ids, from_logits=True)
    with pytest.raises(ValueError, match=r"class ids of shape \(3, 10, 10\)"):
        TemperatureScaling().fit(pixels, ids[:, :5])
    with pytest.raises(ValueError, match="at least one sample"):
        reliability_report(pixels, np.full(ids.shape, 255), from_logits=True, ignore_class=255)

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
    from keras_logits.cli.demo import build_digits_cnn

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


# ---- per position: pixels and tokens ---------------------------------------------------------------

SEG = np.random.default_rng(1)
SEG_LOGITS = (SEG.normal(size=(4, 5, 6, 3)) * 3).astype("float32")   # 4 images of 5x6 pixels, 3 classes
SEG_LABELS = SEG.integers(0, 3, size=(4, 5, 6))
SEG_LABELS[1, 2:, :] = 255                                            # void pixels
SEG_WEIGHTS = SEG.uniform(0.1, 2.0, size=(4, 5, 6)).astype("float32")


def kept_rows(logits, labels, keep):
    """Flatten-then-select: the (P, C) rows and (P,) labels of the positions where `keep` is true."""
    return logits[keep], labels[keep]


def test_per_pixel_metrics_with_ignore_class_and_pixel_weights_equal_the_flattened_reference():
    got = results(metrics.default_metrics("softmax", ignore_class=255), SEG_LABELS, SEG_LOGITS,
                  weights=SEG_WEIGHTS, batches=2)
    keep = SEG_LABELS != 255
    expected = softmax_reference(*kept_rows(SEG_LOGITS, SEG_LABELS, keep), SEG_WEIGHTS[keep])
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=2e-5), name


def test_per_pixel_metrics_take_per_image_weights_and_trailing_label_axes():
    weights = np.array([1.0, 0.0, 2.0, 0.5], "float32")
    got = results(metrics.default_metrics("softmax"), np.where(SEG_LABELS == 255, 0, SEG_LABELS)[..., None],
                  SEG_LOGITS, weights=weights[:, None])
    labels = np.where(SEG_LABELS == 255, 0, SEG_LABELS)
    expected = softmax_reference(SEG_LOGITS.reshape(-1, 3), labels.reshape(-1), np.repeat(weights, 30))
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=2e-5), name


def test_per_token_sigmoid_metrics_with_weights_equal_the_unpadded_tokens():
    logits = MULTI_LOGITS.reshape(5, 8, 4)
    targets = MULTI_LABELS.reshape(5, 8, 4)
    lengths = np.array([8, 3, 5, 1, 6])
    present = (np.arange(8)[None, :] < lengths[:, None]).astype("float32")
    got = results(metrics.default_metrics("sigmoid"), targets, logits, weights=present)
    keep = present > 0
    for name, value in sigmoid_reference(logits[keep], targets[keep]).items():
        assert got[name] == pytest.approx(value, abs=2e-5), name


def test_nonfinite_in_dropped_positions_is_neither_counted_nor_spread():
    logits = SEG_LOGITS.copy()
    logits[1, 3, 0, 0] = np.nan                   # a void pixel
    got = results(metrics.default_metrics("softmax", ignore_class=255), SEG_LABELS, logits)
    clean = results(metrics.default_metrics("softmax", ignore_class=255), SEG_LABELS, SEG_LOGITS)
    assert got == pytest.approx(clean, abs=1e-6)
    logits[0, 0, 0, 1] = np.inf                   # a labelled pixel
    assert results([metrics.NonFiniteLogits(ignore_class=255)], SEG_LABELS, logits)["nonfinite"] == 1.0


def test_ignore_class_is_refused_for_sigmoid_and_one_hot_labels():
    with pytest.raises(ValueError, match="sparse class-id labels of softmax heads"):
        metrics.default_metrics("sigmoid", ignore_class=255)
    with pytest.raises(ValueError, match="with one-hot labels"):
        metrics.BrierScore(ignore_class=255).update_state(np.eye(3)[[0, 1]], SEG_LOGITS[0, 0, :2])


def test_lower_is_better_is_declared_only_where_it_is_defined():
    directions = {m.name: getattr(m, "_direction", None) for m in metrics.default_metrics()}
    assert directions == {"mean": None, "std": None, "margin": None, "nonfinite": "down", "confidence": None,
                          "entropy": None, "ece": "down", "brier": "down"}


@pytest.fixture(scope="module")
def segmentation_model():
    """A per-pixel classifier: Conv2D(3, 1, softmax) over 8x8 inputs, exposed."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                              keras.layers.Conv2D(3, 1, activation="softmax", name="pixels")])
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 3, size=(12, 8, 8))
    y[:, :2, :] = 255
    y[5] = 255
    return keras_logits.expose(model), x, y


@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=COMPILED_ONLY)])
def test_segmentation_evaluate_with_ignore_class_matches_numpy_over_labelled_pixels(segmentation_model,
                                                                                    jit_compile):
    exposed, x, y = segmentation_model
    exposed.compile(loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                               ignore_class=255)},
                    metrics={"logits": metrics.default_metrics("softmax", ignore_class=255)},
                    jit_compile=jit_compile)
    values = exposed.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    logits = exposed.predict(x, verbose=0)["logits"]
    keep = y != 255
    for name, value in softmax_reference(*kept_rows(logits, y, keep)).items():
        assert values[f"logits_{name}"] == pytest.approx(value, abs=1e-4), name


def test_segmentation_weighted_metrics_take_per_pixel_sample_weights(segmentation_model):
    exposed, x, y = segmentation_model
    labels = np.where(y == 255, 0, y)
    weights = np.random.default_rng(4).uniform(0.0, 2.0, size=y.shape).astype("float32")
    exposed.compile(loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                    weighted_metrics={"logits": metrics.default_metrics("softmax")})
    values = exposed.evaluate(x, labels, sample_weight=weights, batch_size=4, verbose=0, return_dict=True)
    logits = exposed.predict(x, verbose=0)["logits"]
    expected = softmax_reference(logits.reshape(-1, 3), labels.reshape(-1), weights.reshape(-1))
    for name, value in expected.items():
        assert values[f"logits_{name}"] == pytest.approx(value, abs=1e-4), name


def test_per_pixel_sample_weights_reach_weighted_metrics_but_not_metrics(segmentation_model):
    """Keras passes sample_weight only to `weighted_metrics`: the same metrics under `metrics` ignore it."""
    exposed, x, y = segmentation_model
    labels = np.where(y == 255, 0, y)
    weights = (np.random.default_rng(5).random(y.shape) < 0.5).astype("float32")  # half the pixels dropped
    exposed.compile(loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                    metrics={"logits": [metrics.MeanConfidence(name="plain_confidence")]},
                    weighted_metrics={"logits": [metrics.MeanConfidence(name="weighted_confidence")]})
    values = exposed.evaluate(x, labels, sample_weight=weights, batch_size=4, verbose=0, return_dict=True)
    p = softmax(exposed.predict(x, verbose=0)["logits"].reshape(-1, 3).astype("float64"))
    assert values["logits_weighted_confidence"] == pytest.approx(
        np.average(p.max(-1), weights=weights.reshape(-1)), abs=1e-5)
    assert values["logits_plain_confidence"] == pytest.approx(p.max(-1).mean(), abs=1e-5)


@pytest.fixture(scope="module", params=["separate", "fused"])
def token_tagger(request):
    """Embedding(mask_zero=True) -> Dense(3) -> softmax, exposed: the logits carry the padding mask.

    "separate": the activation is its own layer, so the exposed logits are the Dense output itself.
    "fused": Dense(3, activation="softmax"); its logits come from PreActivation, which must pass the mask on.
    """
    keras.utils.set_random_seed(5)
    inputs = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(20, 8, mask_zero=True)(inputs)
    if request.param == "fused":
        outputs = keras.layers.Dense(3, activation="softmax", name="tags")(hidden)
    else:
        # Not keras.layers.Softmax: it reads a (batch, time) mask as an attention mask over the classes.
        outputs = keras.layers.Activation("softmax", name="tags")(keras.layers.Dense(3)(hidden))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(5)
    lengths = np.array([7, 2, 5, 1, 4, 6])
    tokens = rng.integers(1, 20, size=(6, 7)) * (np.arange(7)[None, :] < lengths[:, None])
    tags = rng.integers(0, 3, size=(6, 7)) * (tokens > 0)
    return keras_logits.expose(model), tokens.astype("int32"), tags


def test_masked_token_tagger_metrics_count_only_the_unpadded_tokens(token_tagger):
    exposed, tokens, tags = token_tagger
    exposed.compile(loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                    metrics={"logits": metrics.default_metrics("softmax")})
    values = exposed.evaluate(tokens, tags, batch_size=3, verbose=0, return_dict=True)
    logits = exposed.predict(tokens, verbose=0)["logits"]
    for name, value in softmax_reference(*kept_rows(logits, tags, tokens > 0)).items():
        assert values[f"logits_{name}"] == pytest.approx(value, abs=1e-4), name
    with_padding = softmax_reference(logits.reshape(-1, 3), tags.reshape(-1))
    assert values["logits_confidence"] != pytest.approx(with_padding["confidence"], abs=1e-3)


def test_early_stopping_and_checkpoint_in_auto_mode_minimise_ece_and_brier(tmp_path):
    # Keras looks the direction up by the unprefixed metric name, so a one-output model shows it.
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(3, 1)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=metrics.default_metrics("softmax"))
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(16, 8, 8, 2)).astype("float32"), rng.integers(0, 3, size=(16, 8, 8))
    stopping = keras.callbacks.EarlyStopping(monitor="val_ece", patience=1)
    checkpoint = keras.callbacks.ModelCheckpoint(tmp_path / "best.keras", monitor="val_brier", save_best_only=True)
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_nonfinite", patience=1)
    history = model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0,
                        callbacks=[stopping, checkpoint, plateau])
    assert stopping.monitor_op == keras.ops.less and checkpoint.monitor_op == keras.ops.less
    assert plateau.monitor_op == keras.ops.less
    assert stopping.best == pytest.approx(min(history.history["val_ece"]))
    assert (tmp_path / "best.keras").exists()


def test_void_labels_without_ignore_class_make_ece_and_brier_nan_not_wrong():
    got = results(metrics.default_metrics("softmax"), SEG_LABELS, SEG_LOGITS)
    assert np.isnan(got["ece"]) and np.isnan(got["brier"])
    assert np.isfinite(got["confidence"])

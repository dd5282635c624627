"""default_metrics(): one state vector and one pass, with the names, values and directions of eight metrics."""

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits import metrics
from tests.test_metrics import LABELS, LOGITS, WEIGHTS, numpy_ece, results, softmax, softmax_reference

SEPARATE = (metrics.LogitMean, metrics.LogitStd, metrics.TopMargin, metrics.NonFiniteLogits, metrics.MeanConfidence,
            metrics.MeanEntropy, metrics.ExpectedCalibrationError, metrics.BrierScore)
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_default_metrics_hold_one_state_vector_updated_once_per_batch():
    shared = metrics.default_metrics(num_bins=7)
    variables = [v for m in shared for v in m.variables]
    assert len(variables) == 1 and len(variables[0].shape) == 1
    separate = [cls(num_bins=7) if cls is metrics.ExpectedCalibrationError else cls() for cls in SEPARATE]
    got = results(shared, LABELS, LOGITS, weights=WEIGHTS, batches=3)
    assert got == pytest.approx(results(separate, LABELS, LOGITS, weights=WEIGHTS, batches=3), abs=2e-5)
    assert got["ece"] == pytest.approx(numpy_ece(softmax(LOGITS.astype("float64")).max(-1),
                                                 (LOGITS.argmax(-1) == LABELS).astype(float), 7, WEIGHTS), abs=2e-5)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    return rng.normal(size=(48, 6)).astype("float32"), rng.integers(0, 4, 48), rng.uniform(0, 2, 48)


def _model(seed=11):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    return keras_logits.expose(keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(inputs)))


def test_history_keys_and_values_equal_those_of_the_eight_separate_metrics(data):
    """metrics= and weighted_metrics= together: Keras' output prefix, val_ and weighted_ names, unchanged."""
    x, y, weights = data
    histories = []
    for make in (metrics.default_metrics, lambda: [cls() for cls in SEPARATE]):
        model = _model()
        model.compile(optimizer="sgd", loss={"logits": LOSS}, metrics={"logits": make()},
                      weighted_metrics={"logits": make()})
        histories.append(model.fit(x, y, sample_weight=weights, validation_data=(x, y, weights), epochs=2,
                                   batch_size=16, verbose=0).history)
    shared, separate = histories
    assert sorted(shared) == sorted(separate)
    assert {"logits_ece", "val_logits_ece", "logits_weighted_ece", "val_logits_weighted_brier"} <= set(shared)
    for key in separate:
        assert shared[key] == pytest.approx(separate[key], abs=1e-5), key


def test_each_output_of_a_two_head_model_gets_its_own_statistics(data):
    x, _, _ = data
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    exposed = keras_logits.expose(keras.Model(inputs, {
        "species": keras.layers.Dense(5, activation="softmax", name="species")(hidden),
        "tags": keras.layers.Dense(3, activation="sigmoid", name="tags")(hidden)}))
    rng = np.random.default_rng(12)
    y = {"species/logits": rng.integers(0, 5, 48), "tags/logits": rng.integers(0, 2, (48, 3)).astype("float32")}
    exposed.compile(loss={"species/logits": LOSS, "tags/logits": keras.losses.BinaryCrossentropy(from_logits=True)},
                    metrics={"species/logits": metrics.default_metrics("softmax"),
                             "tags/logits": metrics.default_metrics("sigmoid")})
    y_all = {**y, "species/probabilities": y["species/logits"], "tags/probabilities": y["tags/logits"]}
    values = exposed.evaluate(x, y_all, batch_size=16, verbose=0, return_dict=True)
    logits = exposed.predict(x, verbose=0)
    species = softmax_reference(logits["species/logits"], y["species/logits"])
    tags = 1 / (1 + np.exp(-logits["tags/logits"].astype("float64")))
    assert values["species/logits_ece"] == pytest.approx(species["ece"], abs=1e-5)
    assert values["tags/logits_confidence"] == pytest.approx(np.maximum(tags, 1 - tags).mean(), abs=1e-5)


def test_a_reloaded_compiled_model_logs_the_same_names_and_values(data, tmp_path):
    x, y, _ = data
    model = _model()
    model.compile(optimizer="sgd", loss={"logits": LOSS}, metrics={"logits": metrics.default_metrics()})
    before = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    after = reloaded.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert sorted(after) == sorted(before) and "logits_ece" in after
    assert after == pytest.approx(before, abs=1e-5)


@pytest.mark.parametrize("split", ["sliced", "reordered", "metrics_and_weighted_metrics"])
def test_a_broken_up_list_is_refused_saying_to_compile_it_whole(data, split):
    x, y, weights = data
    shared = metrics.default_metrics()
    compiled = {"sliced": dict(metrics={"logits": shared[6:]}),
                "reordered": dict(metrics={"logits": shared[::-1]}),
                "metrics_and_weighted_metrics": dict(metrics={"logits": shared[:4]},
                                                     weighted_metrics={"logits": shared[4:]})}[split]
    model = _model()
    model.compile(loss={"logits": LOSS}, **compiled)
    message = "sample_weight where the first" if split == "metrics_and_weighted_metrics" else "compile the whole list"
    with pytest.raises(ValueError, match=message):
        model.evaluate(x, y, sample_weight=weights, batch_size=16, verbose=0)

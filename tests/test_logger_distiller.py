"""LogitsLogger on a keras.distillation.Distiller fit: it logs the student, checked against NumPy on a twin."""

import csv

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits.callbacks import LogitsLogger
from keras_logits.distillation import KLDistillation, logits_model

pytestmark = pytest.mark.skipif(not hasattr(keras, "distillation"), reason="keras.distillation needs Keras >= 3.12")

PROBE = 64


def _mlp(hidden, seed, name):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(hidden, activation="relu"),
                             keras.layers.Dense(10, activation="softmax", name="head")], name=name)


def _no_activation_twin(model):
    """The same layers and weights, the last Dense without its softmax: the reference logits."""
    twin = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(model.layers[1].units, activation="relu"),
                             keras.layers.Dense(10)])
    twin.set_weights(model.get_weights())
    return twin


def _numpy_summary(logits, labels, num_bins=15):
    """Mean logit, accuracy, Brier (summed over classes) and 15-bin ECE of softmax logits, float64."""
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    confidence, predicted = probabilities.max(axis=-1), probabilities.argmax(axis=-1)
    correct = (predicted == labels).astype(np.float64)
    bins = np.minimum((confidence * num_bins).astype(int), num_bins - 1)
    ece = sum(abs(confidence[bins == b].sum() - correct[bins == b].sum()) for b in range(num_bins)) / len(labels)
    brier = np.mean(np.sum((probabilities - np.eye(logits.shape[-1])[labels]) ** 2, axis=-1))
    return {"mean": logits.mean(), "accuracy": correct.mean(), "brier": brier, "ece": ece}


@pytest.fixture(scope="module")
def distilled(digits, tmp_path_factory):
    """A 2-epoch Distiller fit (logits_model teacher and student, KLDistillation) with a LogitsLogger."""
    (x_train, y_train), (x_test, y_test) = digits
    teacher = _mlp(32, seed=1, name="teacher")
    teacher.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    teacher.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0)
    student = _mlp(8, seed=2, name="student")
    distiller = keras.distillation.Distiller(
        teacher=logits_model(teacher), student=logits_model(student),
        distillation_losses=KLDistillation(temperature=3.0), student_loss_weight=0.5)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=keras_logits.metrics.default_metrics("softmax"))
    directory = tmp_path_factory.mktemp("distiller")
    logger = LogitsLogger((x_test[:PROBE], y_test[:PROBE]), log_dir=directory, csv_path=directory / "log.csv")
    history = distiller.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0, callbacks=[logger],
                            validation_data=(x_test, y_test))
    return student, history.history, directory, x_test[:PROBE], y_test[:PROBE]


def test_distiller_probe_values_equal_numpy_on_the_trained_students_twin(distilled):
    student, history, _, x_probe, y_probe = distilled
    reference = _numpy_summary(_no_activation_twin(student).predict(x_probe, verbose=0), y_probe)
    for statistic, expected in reference.items():
        assert history[f"probe_logits_{statistic}"][-1] == pytest.approx(expected, abs=1e-5), statistic


def test_distiller_logs_the_students_in_step_metrics_and_probe_in_csv(distilled):
    _, history, directory, _, _ = distilled
    assert {"ece", "val_ece", "brier", "val_brier", "probe_logits_ece"} <= set(history)
    with open(directory / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2
    assert float(rows[-1]["probe_logits_accuracy"]) == pytest.approx(history["probe_logits_accuracy"][-1])
    assert float(rows[-1]["val_ece"]) == pytest.approx(history["val_ece"][-1], rel=1e-6)


def test_distiller_snapshot_holds_the_students_logits(distilled):
    student, _, directory, x_probe, _ = distilled
    (snapshot,) = sorted(directory.glob("keras_logits/snapshots/epoch_0001.npz"))
    with np.load(snapshot) as arrays:
        reference = _no_activation_twin(student).predict(x_probe, verbose=0)
        np.testing.assert_allclose(arrays["logits"], reference, atol=1e-5 * max(1.0, np.abs(reference).max()))
        assert str(arrays["activation"]) == "softmax"


def test_distiller_with_an_unmarked_logits_student_is_refused_at_train_begin(digits):
    (x_train, y_train), _ = digits
    inputs = keras.Input((8, 8, 1))
    logits = keras.layers.Dense(10, name="scores")(keras.layers.Flatten()(inputs))
    student = keras.Model(inputs, logits, name="plain_student")
    distiller = keras.distillation.Distiller(
        teacher=logits_model(_mlp(8, seed=3, name="t")), student=student, distillation_losses=KLDistillation())
    distiller.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logger = LogitsLogger((x_train[:16], y_train[:16]), snapshots=False, histograms=False)
    with pytest.raises(ValueError, match=r"logs its student 'plain_student'.*LogitsLogger\(activation="):
        distiller.fit(x_train[:64], y_train[:64], epochs=1, verbose=0, callbacks=[logger])
    # The advice, followed: the student's own activation given to the logger.
    logger = LogitsLogger((x_train[:16], y_train[:16]), snapshots=False, histograms=False, activation="softmax")
    history = distiller.fit(x_train[:64], y_train[:64], epochs=1, verbose=0, callbacks=[logger])
    assert np.isfinite(history.history["probe_logits_mean"][-1])


@pytest.mark.filterwarnings("ignore::keras_logits.checks.ModelCheckWarning")  # a softmax student is flagged
def test_distiller_with_an_original_softmax_student_logs_that_students_logits(digits):
    (x_train, y_train), (x_test, _) = digits
    student = _mlp(8, seed=4, name="softmax_student")
    distiller = keras.distillation.Distiller(
        teacher=logits_model(_mlp(8, seed=5, name="t")), student=student, distillation_losses=KLDistillation())
    distiller.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    logger = LogitsLogger(x_test[:PROBE], snapshots=False, histograms=False)
    history = distiller.fit(x_train[:128], y_train[:128], epochs=1, verbose=0, callbacks=[logger]).history
    reference = _no_activation_twin(student).predict(x_test[:PROBE], verbose=0)
    assert history["probe_logits_mean"][-1] == pytest.approx(float(reference.mean()), abs=1e-5)

"""A Keras mask over the classes (pointer/span heads) is not a mask over positions: metrics and logger agree."""

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits import metrics
from keras_logits.callbacks import LogitsLogger
from tests.test_metrics import numpy_ece

T, FEATURES, SAMPLES = 6, 3, 24


def per_class_crossentropy(y_true, y_pred):
    """Cross-entropy of probabilities kept per class, (batch, T): Keras multiplies it by the (batch, T) class
    mask, where its own sparse losses, (batch,), cannot take that mask."""
    target = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,)), T)
    return -target * keras.ops.log(keras.ops.clip(y_pred, 1e-7, 1.0))


def zero_loss(y_true, y_pred):
    """A loss only so that Keras updates the metrics of the logits output; (batch, T), like the class mask."""
    return keras.ops.zeros_like(y_pred)


@pytest.fixture(scope="module")
def pointer_head():
    """Scores Dense(1) over T positions, squeezed to (batch, T), Softmax(mask=padding): T classes, exposed."""
    keras.utils.set_random_seed(7)
    x_in = keras.Input((T, FEATURES), name="tokens")
    mask_in = keras.Input((T,), dtype="bool", name="padding")
    dense = keras.layers.Dense(1, name="score")
    scores = keras.layers.Reshape((T,))(dense(x_in))
    pointer = keras.layers.Softmax(name="pointer")(scores, mask=mask_in)
    model = keras.Model([x_in, mask_in], pointer)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(SAMPLES, T, FEATURES)).astype("float32")
    lengths = rng.integers(2, T + 1, SAMPLES)  # at least two real classes per sample: a margin exists
    mask = np.arange(T)[None, :] < lengths[:, None]
    labels = (rng.random(SAMPLES) * lengths).astype(int)  # always a real (unmasked) position
    return model, dense, x, mask, labels


def numpy_pointer_reference(dense, x, mask, labels):
    """Softmax over the unmasked classes only (masked ones get probability 0), in float64."""
    kernel, bias = (np.asarray(w, "float64") for w in dense.get_weights())
    scores = (x.astype("float64") @ kernel)[..., 0] + bias[0]
    shifted = np.where(mask, scores - np.where(mask, scores, -np.inf).max(-1, keepdims=True), -np.inf)
    p = np.exp(shifted)
    p /= p.sum(-1, keepdims=True)
    top2 = np.sort(np.where(mask, scores, -np.inf), -1)[:, -2:]
    confidence = p.max(-1)
    correct = (p.argmax(-1) == labels).astype(float)
    log_p = np.where(mask, np.log(np.where(mask, p, 1.0)), 0.0)
    return {
        "margin": np.mean(top2[:, 1] - top2[:, 0]),
        "confidence": confidence.mean(),
        "entropy": np.mean(-(p * log_p).sum(-1)),
        "ece": numpy_ece(confidence, correct),
        "brier": np.mean(((p - np.eye(T)[labels]) ** 2).sum(-1)),
        "accuracy": correct.mean(),
    }


def test_pointer_head_evaluate_metrics_equal_numpy_with_masked_classes_at_probability_zero(pointer_head):
    model, dense, x, mask, labels = pointer_head
    exposed = keras_logits.expose(model)
    exposed.compile(loss={"logits": zero_loss},
                    metrics={"logits": metrics.default_metrics("softmax")})
    values = exposed.evaluate([x, mask], labels, batch_size=8, verbose=0, return_dict=True)
    reference = numpy_pointer_reference(dense, x, mask, labels)
    for name in ("margin", "confidence", "entropy", "ece", "brier"):
        assert values[f"logits_{name}"] == pytest.approx(reference[name], abs=1e-5), name
    assert values["logits_nonfinite"] == 0.0


def test_pointer_head_logger_probe_equals_numpy_with_masked_classes_at_probability_zero(pointer_head, tmp_path):
    model, dense, x, mask, labels = pointer_head
    model.compile(optimizer="sgd", loss=per_class_crossentropy)
    history = model.fit([x, mask], labels, epochs=1, batch_size=8, verbose=0,
                        callbacks=[LogitsLogger(([x, mask], labels), csv_path=tmp_path / "log.csv")])
    reference = numpy_pointer_reference(dense, x, mask, labels)  # the weights after the epoch
    for name, value in reference.items():
        assert history.history[f"probe_logits_{name}"][-1] == pytest.approx(value, abs=1e-5), name
    with np.load(tmp_path / "log_snapshots" / "epoch_0000.npz") as snapshot:
        assert snapshot["logits"].shape == (SAMPLES, T) and "mask" not in snapshot

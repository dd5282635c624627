"""keras_logits.statistics against flatten-then-compute NumPy references (masks, weights, ignore_class)."""

import numpy as np
import pytest
from scipy import special

from keras_logits import statistics

TOLERANCE = dict(rel=1e-9, abs=1e-12)
RNG = np.random.default_rng(0)
SEG_LOGITS = RNG.normal(size=(3, 4, 5, 6)) * 3          # 3 images, 4x5 pixels, 6 classes
SEG_LABELS = RNG.integers(0, 6, size=(3, 4, 5))
SEG_LABELS[0, :2, :] = 255                             # void pixels
SEG_WEIGHTS = RNG.uniform(0.1, 2.0, size=(3, 4, 5))
SEG_WEIGHTS[2, 3, 4] = 0.0
TOKEN_LOGITS = RNG.normal(size=(4, 7, 3)) * 2          # 4 sentences of up to 7 tokens, 3 labels
TOKEN_TARGETS = RNG.integers(0, 2, size=(4, 7, 3)).astype(float)
TOKEN_MASK = np.arange(7)[None, :] < np.array([7, 3, 5, 1])[:, None]


def numpy_ece(confidence, correct, weights, bins=15):
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    gaps = [abs(np.sum((weights * confidence)[index == b]) - np.sum((weights * correct)[index == b]))
            for b in range(bins)]
    return sum(gaps) / weights.sum()


def softmax_reference(logits, labels, weights):
    """Rows and weights of the kept positions by an explicit loop, then weighted means."""
    rows, ids, w = [], [], []
    for index in np.ndindex(*logits.shape[:-1]):
        if labels[index] != 255 and weights[index] > 0:
            rows.append(logits[index]), ids.append(labels[index]), w.append(weights[index])
    x, ids, w = np.array(rows), np.array(ids), np.array(w)
    p = special.softmax(x, axis=1)
    top2 = np.sort(x, axis=1)[:, -2:]
    correct = (p.argmax(1) == ids).astype(float)
    flat_w = np.repeat(w, x.shape[1])
    return {
        "mean": np.average(x.ravel(), weights=flat_w),
        "std": np.sqrt(np.cov(x.ravel(), aweights=flat_w, bias=True)),
        "nonfinite": 0.0,
        "margin": np.average(top2[:, 1] - top2[:, 0], weights=w),
        "confidence": np.average(p.max(1), weights=w),
        "entropy": np.average(-(p * np.log(p)).sum(1), weights=w),
        "ece": numpy_ece(p.max(1), correct, w),
        "brier": np.average(((p - np.eye(x.shape[1])[ids]) ** 2).sum(1), weights=w),
        "accuracy": np.average(correct, weights=w),
    }


def sigmoid_reference(logits, targets, mask):
    x, t = logits[mask], targets[mask]                   # (tokens, labels)
    p = special.expit(x)
    confidence = np.maximum(p, 1 - p)
    correct = ((p >= 0.5) == (t >= 0.5)).astype(float)
    return {
        "mean": x.mean(), "std": x.std(), "nonfinite": 0.0, "margin": np.abs(x).mean(),
        "confidence": confidence.mean(), "entropy": (-(p * np.log(p) + (1 - p) * np.log(1 - p))).mean(),
        "ece": numpy_ece(confidence.ravel(), correct.ravel(), np.ones(correct.size)),
        "brier": ((p - t) ** 2).mean(), "accuracy": correct.mean(),
    }


def test_segmentation_summary_equals_a_loop_over_kept_pixels():
    summary = statistics.summarize(SEG_LOGITS, SEG_LABELS, activation="softmax", sample_weight=SEG_WEIGHTS,
                                   ignore_class=255)
    reference = softmax_reference(SEG_LOGITS, SEG_LABELS, SEG_WEIGHTS)
    assert sorted(summary) == sorted(reference)
    for key, value in reference.items():
        assert summary[key] == pytest.approx(value, **TOLERANCE), key


def test_masked_token_sigmoid_summary_equals_the_unpadded_tokens():
    summary = statistics.summarize(TOKEN_LOGITS, TOKEN_TARGETS, activation="sigmoid", mask=TOKEN_MASK)
    for key, value in sigmoid_reference(TOKEN_LOGITS, TOKEN_TARGETS, TOKEN_MASK).items():
        assert summary[key] == pytest.approx(value, **TOLERANCE), key


def test_label_layouts_give_the_same_positions():
    labels = SEG_LABELS.copy()
    labels[labels == 255] = 0
    sparse = statistics.positions(SEG_LOGITS, labels, activation="softmax")
    trailing = statistics.positions(SEG_LOGITS, labels[..., None], activation="softmax")
    one_hot = statistics.positions(SEG_LOGITS, np.eye(6)[labels], activation="softmax")
    soft = statistics.positions(SEG_LOGITS, np.eye(6)[labels], activation="softmax", soft_labels=True)
    assert sparse.values.shape == (60, 6) and sparse.labels.dtype == np.int64
    for other in (trailing, one_hot):
        np.testing.assert_array_equal(other.labels, sparse.labels)
    np.testing.assert_array_equal(soft.labels.argmax(1), sparse.labels)
    np.testing.assert_array_equal(sparse.values, SEG_LOGITS.reshape(-1, 6))


def test_per_sample_weights_broadcast_over_positions_and_zero_drops():
    weights = np.array([1.0, 0.0, 2.0])
    kept = statistics.positions(SEG_LOGITS, activation="softmax", sample_weight=weights)
    np.testing.assert_array_equal(kept.weights, np.repeat([1.0, 2.0], 20))
    np.testing.assert_array_equal(kept.values, SEG_LOGITS[[0, 2]].reshape(-1, 6))
    keras_style = statistics.positions(SEG_LOGITS, activation="softmax", sample_weight=weights[:, None])
    np.testing.assert_array_equal(keras_style.weights, kept.weights)


def test_two_dimensional_input_is_one_position_per_sample():
    logits, labels = SEG_LOGITS[:, 0, 0], SEG_LABELS[1:, 0, 0]
    summary = statistics.summarize(logits[1:], labels, activation="softmax")
    reference = softmax_reference(logits[1:], labels, np.ones(2))
    assert summary["ece"] == pytest.approx(reference["ece"], **TOLERANCE)
    assert summary["brier"] == pytest.approx(reference["brier"], **TOLERANCE)


def test_nonfinite_counts_only_kept_positions():
    logits = np.zeros((2, 3, 2))
    logits[0, 0, 0], logits[1, 2, 1] = np.nan, np.inf
    summary = statistics.summarize(logits, activation="softmax", mask=[[1, 1, 1], [1, 1, 0]])
    assert summary["nonfinite"] == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(labels=np.zeros((3, 4))), r"labels have shape \(3, 4\), but logits of shape \(3, 4, 5, 6\) need "
                                        r"class ids of shape \(3, 4, 5\)"),
        (dict(labels=np.zeros((2, 4, 5))), "but there are 3 samples"),
        (dict(labels=np.zeros((3, 4, 5, 7))), "labels have 7 columns but the logits have 6 classes"),
        (dict(labels=np.full((3, 4, 5), 255)), "pass ignore_class=255"),
        (dict(labels=np.eye(6)[np.zeros((3, 4, 5), int)], ignore_class=255), "sparse class-id labels"),
        (dict(mask=np.ones((3, 5))), r"mask has shape \(3, 5\), but logits of positions \(3, 4, 5\)"),
        (dict(sample_weight=-np.ones(3)), "non-negative"),
        (dict(ignore_class=0), "ignore_class needs labels"),
    ],
)
def test_bad_positions_input_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        statistics.positions(SEG_LOGITS, activation="softmax", **kwargs)


def test_sigmoid_ignore_class_and_empty_summaries_are_refused():
    with pytest.raises(ValueError, match="for a sigmoid head"):
        statistics.positions(TOKEN_LOGITS, TOKEN_TARGETS, activation="sigmoid", ignore_class=255)
    with pytest.raises(ValueError, match="No positions left"):
        statistics.summarize(TOKEN_LOGITS, activation="sigmoid", mask=np.zeros((4, 7)))
    with pytest.raises(ValueError, match=r"logits\[None\]"):
        statistics.positions(np.zeros(3), activation="softmax")


def test_summary_in_chunks_of_a_few_samples_equals_the_loop(monkeypatch):
    monkeypatch.setattr(statistics, "_CHUNK_VALUES", 2 * 20 * 6)     # two images per chunk, the last alone
    summary = statistics.summarize(SEG_LOGITS, SEG_LABELS, activation="softmax", sample_weight=SEG_WEIGHTS,
                                   ignore_class=255)
    for key, value in softmax_reference(SEG_LOGITS, SEG_LABELS, SEG_WEIGHTS).items():
        assert summary[key] == pytest.approx(value, **TOLERANCE), key
    monkeypatch.setattr(statistics, "_CHUNK_VALUES", 7 * 3)          # one sentence per chunk
    summary = statistics.summarize(TOKEN_LOGITS, TOKEN_TARGETS, activation="sigmoid", mask=TOKEN_MASK)
    for key, value in sigmoid_reference(TOKEN_LOGITS, TOKEN_TARGETS, TOKEN_MASK).items():
        assert summary[key] == pytest.approx(value, **TOLERANCE), key
    with pytest.raises(ValueError, match="but there are 3 samples"):
        statistics.summarize(SEG_LOGITS, SEG_LABELS[:2], activation="softmax")


def test_normalize_labels_gives_ids_for_every_softmax_layout_and_targets_on_request():
    labels = np.where(SEG_LABELS == 255, 0, SEG_LABELS)
    one_hot = np.eye(6)[labels]
    for layout in (labels, labels[..., None], one_hot):
        ids = statistics.normalize_labels(layout, SEG_LOGITS.shape, activation="softmax")
        assert ids.shape == SEG_LOGITS.shape[:-1]
        np.testing.assert_array_equal(ids, labels)
    targets = statistics.normalize_labels(one_hot, SEG_LOGITS.shape, activation="softmax", soft_labels=True)
    assert targets.dtype == np.float64 and targets.shape == SEG_LOGITS.shape
    np.testing.assert_array_equal(targets, one_hot)
    binary = statistics.normalize_labels([1, 0, 1], (3, 1), activation="sigmoid")
    assert binary.tolist() == [[1.0], [0.0], [1.0]]


def test_normalize_labels_checks_class_ids_only_where_they_count():
    ids = np.array([[2, 0, -1], [1, -1, -1]])                   # -1: padding tokens
    counted = ids >= 0
    kept = statistics.normalize_labels(ids, (2, 3, 3), activation="softmax", where=counted)
    np.testing.assert_array_equal(kept, ids)
    with pytest.raises(ValueError, match=r"integers in \[0, 3\); got values from -1 to 2"):
        statistics.normalize_labels(ids, (2, 3, 3), activation="softmax")
    with pytest.raises(ValueError, match="sparse class-id labels"):
        statistics.normalize_labels(np.eye(3)[[0, 1]], (2, 3), activation="softmax", ignore_class=255)


def test_positions_targets_are_one_hot_rows_of_the_kept_ids():
    kept = statistics.positions(SEG_LOGITS, SEG_LABELS, activation="softmax", ignore_class=255)
    keep = SEG_LABELS != 255
    np.testing.assert_array_equal(kept.targets(), np.eye(6)[SEG_LABELS[keep]])
    soft = statistics.positions(TOKEN_LOGITS, TOKEN_TARGETS, activation="sigmoid", mask=TOKEN_MASK)
    np.testing.assert_array_equal(soft.targets(), TOKEN_TARGETS[TOKEN_MASK])
    with pytest.raises(ValueError, match="no labels"):
        statistics.positions(SEG_LOGITS, activation="softmax").targets()

"""Host-side statistics of logits, per position: every axis but the last is a position.

A classification head's output is `(batch, ..., classes)`: one prediction per
image (`(batch, C)`), per pixel (`(batch, H, W, C)`) or per token
(`(batch, time, C)`). `positions` flattens such an array into one row per
position, keeping only the positions that count (not masked, label not
`ignore_class`, weight not 0), and `summarize` computes the statistics of the
in-step metrics (`keras_logits.metrics`) over those rows in NumPy float64,
weighted. The two agree to float32 rounding (a test holds them equal).

Example:

>>> import numpy as np
>>> from keras_logits import statistics
>>> logits = np.zeros((2, 3, 3, 4))             # 2 images of 3x3 pixels, 4 classes
>>> logits[..., 1] = 2.0
>>> labels = np.ones((2, 3, 3), "int64")
>>> labels[0, 0, 0] = 255                        # a "void" pixel
>>> kept = statistics.positions(logits, labels, activation="softmax", ignore_class=255)
>>> kept.values.shape, kept.labels.shape, float(kept.weights.sum())
((17, 4), (17,), 17.0)
>>> summary = statistics.summarize(logits, labels, activation="softmax", ignore_class=255)
>>> round(summary["confidence"], 4), summary["accuracy"], summary["margin"]
(0.7112, 1.0, 2.0)
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from keras_logits._activations import check_activation
from keras_logits.scores import _binary_entropies, _classes_last, _softmax_entropy, log_sigmoid, log_softmax


@dataclasses.dataclass(frozen=True)
class Positions:
    """The kept positions of a `(batch, ..., classes)` array, one row each (see `positions`).

    Attributes:
        values: `(P, C)` float64 logits (or probabilities), one row per kept position.
        labels: Softmax: `(P,)` int64 class ids (or, with `soft_labels=True`
            and one-hot / soft labels, `(P, C)` float64 targets). Sigmoid:
            `(P, C)` float64 0/1 targets. None without labels.
        weights: `(P,)` float64 weights, all > 0.
    """

    values: np.ndarray
    labels: Optional[np.ndarray]
    weights: np.ndarray

    def targets(self) -> np.ndarray:
        """`(P, C)` float64 targets: class ids become one-hot rows, targets stay as they are.

        Example:

        >>> kept = positions(np.zeros((2, 3)), [2, 0], activation="softmax")
        >>> kept.targets().tolist()
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
        """
        if self.labels is None:
            raise ValueError("These positions have no labels; pass labels to positions().")
        if self.labels.ndim == 2:
            return self.labels
        one_hot = np.zeros(self.values.shape)  # not np.eye(num_classes)[ids]: 10^5 classes
        one_hot[np.arange(len(self.labels)), self.labels] = 1.0
        return one_hot


def positions(values, labels=None, *, activation: str, mask=None, sample_weight=None,
              ignore_class: Optional[int] = None, soft_labels: bool = False,
              name: str = "logits") -> Positions:
    """Flattens `(batch, ..., C)` values to the `(P, C)` rows of the positions that count.

    A position is dropped when its `mask` is falsy, its sparse label equals
    `ignore_class`, or its weight is 0.

    Args:
        values: `(batch, ..., C)` logits or probabilities; classes on the last
            axis. A 1-D vector is one binary logit per sample for `"sigmoid"`.
        labels: Class ids, one-hot / soft labels or 0/1 targets; every layout
            `normalize_labels` reads.
        activation: `"softmax"` or `"sigmoid"`.
        mask: Optional `(batch, ...)` (or a prefix, e.g. `(batch,)`) truthy
            where a position counts, e.g. a Keras padding mask.
        sample_weight: Optional non-negative weights `(batch,)` or
            `(batch, ...)`, broadcast over the remaining position axes.
        ignore_class: A sparse label value whose positions are dropped (e.g.
            255 "void" pixels), as in `keras.losses.SparseCategoricalCrossentropy`.
        soft_labels: Keep one-hot / soft softmax labels as `(P, C)` targets.
        name: What `values` are called in error messages.

    Returns:
        A `Positions` with `values`, `labels` and `weights`.

    Example:

    >>> import numpy as np
    >>> tokens = np.arange(12.0).reshape(2, 3, 2)          # 2 sentences of 3 tokens, 2 classes
    >>> kept = positions(tokens, [[0, 1, 0], [1, 0, 0]], activation="softmax",
    ...                  mask=[[1, 1, 0], [1, 0, 0]])
    >>> kept.values.tolist(), kept.labels.tolist()
    ([[0.0, 1.0], [2.0, 3.0], [6.0, 7.0]], [0, 1, 1])
    """
    values = _classes_last(values, activation, name)
    position_shape, num_classes = values.shape[:-1], values.shape[-1]
    weights = np.ones(position_shape)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype="float64")
        if not np.all(np.isfinite(sample_weight)) or np.any(sample_weight < 0):
            raise ValueError("sample_weight must be finite and non-negative; drop a position with weight 0.")
        weights = weights * _to_positions(sample_weight, position_shape, "sample_weight", name)
    if mask is not None:
        weights = weights * _to_positions(np.asarray(mask).astype(bool), position_shape, "mask", name)
    targets = None
    if labels is not None:
        targets = normalize_labels(labels, values.shape, activation=activation, ignore_class=ignore_class,
                                   soft_labels=soft_labels, where=weights > 0, name=name)
        if ignore_class is not None:  # normalize_labels refuses ignore_class unless these are class ids
            weights = weights * (targets != ignore_class)
    elif ignore_class is not None:
        raise ValueError("ignore_class needs labels: it drops the positions whose label equals it.")
    keep = weights.reshape(-1) > 0
    everything = bool(keep.all())
    flat = values.reshape(-1, num_classes)
    rows = (flat if everything else flat[keep]).astype("float64", copy=False)
    if targets is not None:
        targets = targets.reshape(len(keep), -1) if targets.ndim > len(position_shape) else targets.reshape(-1)
        targets = targets if everything else targets[keep]
        targets = targets.astype("int64") if targets.ndim == 1 else targets.astype("float64")
    return Positions(values=rows, labels=targets, weights=weights.reshape(-1)[keep].astype("float64"))


def summarize(logits, labels=None, *, activation: str, mask=None, sample_weight=None,
              ignore_class: Optional[int] = None, num_bins: int = 15) -> dict:
    """The in-step metrics' statistics of `(batch, ..., C)` logits, per position, weighted.

    Keys: `mean`, `std`, `nonfinite` (over the kept positions' logits, all
    classes), `margin`, `confidence`, `entropy` and, with labels, `ece`,
    `brier`, `accuracy`. Softmax (with more than one class): margin is top-1
    minus top-2 logit, confidence the top probability, entropy in nats, Brier
    summed over classes, correct when the argmax is the label. Sigmoid (and a
    single-class softmax): every unit is a binary decision; margin is mean
    |logit|, confidence mean max(p, 1 - p), entropy the mean binary entropy,
    Brier and accuracy averaged over units, ECE over all unit decisions. The
    same definitions as `keras_logits.metrics.default_metrics`.

    Args:
        logits: `(batch, ..., C)` logits.
        labels, activation, mask, sample_weight, ignore_class: As in `positions`.
        num_bins: Equal-width confidence bins of the ECE.

    Returns:
        A dict of plain floats.

    Example:

    >>> import numpy as np
    >>> summary = summarize(np.array([[[0.0, 2.0], [3.0, 0.0]]]), [[1, 1]], activation="softmax")
    >>> summary["accuracy"], summary["margin"], summary["nonfinite"]
    (0.5, 2.5, 0.0)
    """
    if not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}.")
    logits = np.asarray(logits)
    given = [np.asarray(a) for a in (labels, mask, sample_weight) if a is not None]
    if logits.ndim < 2 or any(a.shape[:1] != logits.shape[:1] for a in given):
        chunks = [slice(None)]  # one call: positions() refuses with the whole shapes in its message
    else:
        # Chunks of whole samples bound the float64 temporaries (a 64x512x512x21 probe is 352M logits).
        step = max(1, _CHUNK_VALUES // max(int(np.prod(logits.shape[1:])), 1))
        chunks = [slice(start, start + step) for start in range(0, len(logits), step)]

    def part(array, chunk):
        return None if array is None else np.asarray(array)[chunk]

    sums = {}
    for chunk in chunks:
        kept = positions(logits[chunk], part(labels, chunk), activation=activation, mask=part(mask, chunk),
                         sample_weight=part(sample_weight, chunk), ignore_class=ignore_class)
        for key, value in _sums(kept, activation, num_bins).items():
            sums[key] = sums.get(key, 0.0) + value
    total = sums.get("weight", 0.0)
    if not total > 0:
        raise ValueError("No positions left to summarize: every position is masked, has label == "
                         "ignore_class or weight 0. Check the mask and labels.")
    mean = sums["logits"] / sums["logit_weight"]
    summary = {"mean": mean,
               "std": np.sqrt(max(sums["squares"] / sums["logit_weight"] - mean**2, 0.0)),
               "nonfinite": sums["nonfinite"]}
    summary.update({key: sums[key] / total for key in ("margin", "confidence", "entropy", "brier", "accuracy")
                    if key in sums})
    if "bin_weight" in sums:
        summary["ece"] = _ece_of_bins(sums["bin_weight"], sums["bin_confidence"], sums["bin_correct"])
    return {key: float(value) for key, value in summary.items()}


_CHUNK_VALUES = 1 << 22  # logits per chunk in summarize: ~32 MB per float64 temporary


def _sums(kept: Positions, activation: str, num_bins: int) -> dict:
    """Weighted sums of one chunk's per-position statistics; `summarize` adds chunks and divides."""
    x, w = kept.values, kept.weights
    if len(w) == 0:
        return {}
    sums = {"weight": w.sum(), "logit_weight": w.sum() * x.shape[1], "logits": w @ x.sum(axis=1),
            "squares": w @ (x**2).sum(axis=1), "nonfinite": float(np.sum(~np.isfinite(x)))}
    if activation == "softmax" and x.shape[1] > 1:
        # Log-probabilities once: probabilities and entropy share them (10^5-class probes are large).
        log_p = log_softmax(x)
        p = np.exp(log_p)
        top_two = np.partition(x, -2, axis=1)[:, -2:]
        sums["margin"] = w @ (top_two[:, 1] - top_two[:, 0])
        sums["entropy"] = w @ _softmax_entropy(log_p)
    else:
        activation = "sigmoid"  # a single-class softmax is constant: read its one unit as a binary decision
        log_p = log_sigmoid(x)
        p = np.exp(log_p)
        sums["margin"] = w @ np.abs(x).mean(axis=1)
        sums["entropy"] = w @ _binary_entropies(log_p, log_sigmoid(-x)).mean(axis=1)
    decisions = _decisions(p, kept.labels, activation, w)
    units = len(decisions.weights) // len(w)  # decisions per position: 1, or the sigmoid units
    sums["confidence"] = decisions.weights @ decisions.confidence / units
    if kept.labels is not None:
        sums["accuracy"] = decisions.weights @ decisions.correct / units
        sums["brier"] = w @ _brier(p, kept.labels, activation)
        sums["bin_weight"], sums["bin_confidence"], sums["bin_correct"] = calibration_bins(
            decisions.confidence, decisions.correct, num_bins, decisions.weights)
    return sums


@dataclasses.dataclass(frozen=True)
class _Decisions:
    """The decisions of `(P, C)` probabilities: one per row (softmax), one per unit (sigmoid)."""

    confidence: np.ndarray
    correct: Optional[np.ndarray]  # None without labels
    weights: np.ndarray


def _decisions(p: np.ndarray, labels: Optional[np.ndarray], activation: str, weights: np.ndarray) -> _Decisions:
    """Softmax: the top class, correct when it is the label. Sigmoid: each unit, correct when `p >= 0.5` matches."""
    if activation == "softmax":
        correct = None
        if labels is not None:
            correct = p.argmax(axis=1) == (labels if labels.ndim == 1 else labels.argmax(axis=1))
        return _Decisions(p.max(axis=1), correct, weights)
    correct = None if labels is None else ((p >= 0.5) == (_unit_targets(labels) >= 0.5)).ravel()
    return _Decisions(np.maximum(p, 1.0 - p).ravel(), correct, np.repeat(weights, p.shape[1]))


def _brier(p: np.ndarray, labels: np.ndarray, activation: str) -> np.ndarray:
    """Per-position Brier score: softmax sums `(p - y)^2` over classes, sigmoid averages it over units."""
    if activation == "sigmoid":
        return ((p - _unit_targets(labels)) ** 2).mean(axis=1)
    if labels.ndim == 2:
        return ((p - labels) ** 2).sum(axis=1)
    # sum_c (p_c - y_c)^2 = sum_c p_c^2 - 2 p_label + 1, without a (classes x classes) eye.
    return (p**2).sum(axis=1) - 2.0 * p[np.arange(len(labels)), labels] + 1.0


def _unit_targets(labels: np.ndarray) -> np.ndarray:
    return labels if labels.ndim == 2 else labels[:, None].astype("float64")


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, num_bins: int, weights=None) -> tuple:
    """Per-bin `(weight, weighted confidence sum, weighted correct sum)` over `num_bins` equal-width bins.

    Bin `i` holds confidences in `[i/n, (i+1)/n)`, the last one also 1.0. Without
    weights the first entry is the count.

    Example:

    >>> [b.tolist() for b in calibration_bins(np.array([0.2, 0.9, 0.95]), np.array([1, 0, 1]), 2)]
    [[1.0, 2.0], [0.2, 1.85], [1.0, 1.0]]
    """
    confidence = np.asarray(confidence, dtype="float64")
    bins = np.clip(np.nan_to_num(confidence * num_bins).astype("int64"), 0, num_bins - 1)
    weights = np.ones(len(bins)) if weights is None else np.asarray(weights, dtype="float64")
    return (np.bincount(bins, weights, num_bins),
            np.bincount(bins, weights * confidence, num_bins),
            np.bincount(bins, weights * np.asarray(correct, dtype="float64"), num_bins))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, num_bins: int = 15,
                               weights=None) -> float:
    """`sum_bins |weighted confidence sum - weighted correct sum| / total weight`.

    Example:

    >>> round(expected_calibration_error(np.array([0.9, 0.7]), np.array([1, 0]), num_bins=10), 6)
    0.4
    """
    return _ece_of_bins(*calibration_bins(confidence, correct, num_bins, weights))


def _ece_of_bins(weight: np.ndarray, confidence_sum: np.ndarray, correct_sum: np.ndarray) -> float:
    """The ECE of `calibration_bins`' sums (also of sums added over chunks); 0 without any weight."""
    total = weight.sum()
    return float(np.abs(confidence_sum - correct_sum).sum() / total) if total > 0 else 0.0


def _to_positions(array: np.ndarray, position_shape: tuple, what: str, name: str) -> np.ndarray:
    """Broadcasts a `(batch,)`, `(batch, ...)` or `(batch, ..., 1)` array over the position axes."""
    while array.ndim > 1 and array.shape != position_shape[:array.ndim] and array.shape[-1] == 1:
        array = array[..., 0]  # Keras' (batch, 1) sample weights
    if array.shape != position_shape[:array.ndim] or array.ndim == 0:
        raise ValueError(
            f"{what} has shape {array.shape}, but {name} of positions {position_shape} need {what} of shape "
            f"{position_shape} or a prefix of it such as ({position_shape[0]},)."
        )
    return np.broadcast_to(array.reshape(array.shape + (1,) * (len(position_shape) - array.ndim)),
                           position_shape)


def normalize_labels(labels, values_shape: tuple, *, activation: str, ignore_class: Optional[int] = None,
                     soft_labels: bool = False, where=None, name: str = "logits") -> np.ndarray:
    """Checks labels against `(batch, ..., C)` values and returns them as class ids or as targets.

    The one host-side reader of labels (`positions`, calibration, the logger's
    probe). Softmax: class ids `(batch, ...)` or `(batch, ..., 1)`, or one-hot
    / soft labels `(batch, ..., C)` (read as their argmax unless
    `soft_labels=True`). Sigmoid: 0/1 (or soft) targets of the values' shape,
    or `(batch, ...)` when `C == 1`.

    Args:
        labels: The labels, any array NumPy reads.
        values_shape: The shape of the logits or probabilities, classes last.
        activation: `"softmax"` or `"sigmoid"`.
        ignore_class: A class id marking positions that do not count (sparse
            softmax labels only; refused otherwise).
        soft_labels: Keep one-hot / soft softmax labels as targets.
        where: Optional boolean array of the position shape: class ids are
            checked (integers in `[0, C)`) only where it is True, e.g. not at
            padding.
        name: What the values are called in error messages.

    Returns:
        Class ids of the position shape (their own dtype, integer-valued where
        they count) or float64 targets of `values_shape`: ids exactly when the
        shape differs from `values_shape`.

    Example:

    >>> normalize_labels([[0, 2], [1, 255]], (2, 2, 3), activation="softmax", ignore_class=255).tolist()
    [[0, 2], [1, 255]]
    >>> normalize_labels(np.eye(3)[[0, 2]], (2, 3), activation="softmax").tolist()
    [0, 2]
    """
    check_activation(activation)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biuf":
        raise ValueError(f"labels must be numbers, got dtype {labels.dtype}.")
    values_shape = tuple(values_shape)
    position_shape, num_classes = values_shape[:-1], values_shape[-1]
    if activation == "sigmoid" and ignore_class is not None:
        raise ValueError("ignore_class applies to sparse class-id labels of softmax heads; for a sigmoid head, "
                         "drop positions with mask= or a sample_weight of 0.")
    if labels.shape == values_shape and (activation == "sigmoid" or num_classes > 1):
        if not np.all(np.isfinite(labels)) or np.any((labels < 0) | (labels > 1)):
            raise ValueError("One-hot / multi-hot labels must be in [0, 1].")
        if ignore_class is not None:
            raise ValueError("ignore_class applies to sparse class-id labels; with one-hot labels drop "
                             "positions with mask= or a sample_weight of 0.")
        if activation == "sigmoid" or soft_labels:
            return labels.astype("float64")
        return labels.argmax(axis=-1)
    if labels.shape in (position_shape, position_shape + (1,)):
        labels = labels.reshape(position_shape)
        if activation == "softmax":
            _check_class_ids(labels, where, ignore_class, values_shape)
            return labels
        if num_classes != 1:
            raise ValueError(f"labels have shape {labels.shape}, but a sigmoid head of {num_classes} labels "
                             f"needs 0/1 targets of the {name}' shape {values_shape}.")
        return labels.astype("float64")[..., None]
    if labels.shape[:1] != position_shape[:1]:
        raise ValueError(
            f"labels have shape {labels.shape} but there are {position_shape[0]} samples; "
            "pass one label (or one row of labels) per sample."
        )
    if labels.shape[:-1] == position_shape:
        raise ValueError(f"labels have {labels.shape[-1]} columns but the {name} have {num_classes} classes.")
    expected = (f"class ids of shape {position_shape} or one-hot labels of shape {values_shape}"
                if activation == "softmax" else f"0/1 targets of shape {values_shape}")
    raise ValueError(f"labels have shape {labels.shape}, but {name} of shape {values_shape} need {expected}.")


def _check_class_ids(ids: np.ndarray, where, ignore_class, values_shape: tuple) -> None:
    """Class ids must be integers in range where they count."""
    num_classes = values_shape[-1]
    counted = np.ones(ids.shape, bool) if where is None else np.broadcast_to(np.asarray(where, bool), ids.shape)
    if ignore_class is not None:
        counted = counted & (ids != ignore_class)
    ids = ids[counted]
    if ids.size and (np.any(ids != np.round(ids)) or ids.min() < 0 or ids.max() >= num_classes):
        hint = (f" If {int(ids.max())} marks positions to skip (e.g. 255 'void' pixels), pass ignore_class="
                f"{int(ids.max())}." if ignore_class is None and ids.max() >= num_classes
                and ids.max() == np.round(ids.max()) else "")
        raise ValueError(
            f"Class-id labels must be integers in [0, {num_classes}); got values from {ids.min()} to {ids.max()}. "
            f"One-hot labels need the logits' shape {values_shape}.{hint}"
        )

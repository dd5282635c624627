"""The math of the in-step metrics: positions that count, per-position statistics, calibration bins.

One definition of each statistic, in `keras.ops` (it runs inside compiled
steps on every backend). `keras_logits.metrics` uses it twice: each
individual metric class keeps the one statistic it reports (TensorFlow's
graph and XLA prune the rest; torch's eager steps compute it), and the
shared statistics of `default_metrics()` take all of them from one pass into
one state vector.

Example:

>>> import numpy as np
>>> from keras import ops
>>> rows, labels, weights = positions([1, 0], np.array([[0.0, 2.0], [1.0, 1.0]]), None, activation="softmax")
>>> sums = statistic_sums(rows, labels, weights, activation="softmax", from_logits=True, num_bins=10)
>>> round(float(statistics_from_sums(sums, 10)["margin"]), 4)
1.0
"""

from __future__ import annotations

from typing import Dict, Optional

from keras import ops
# Keras 3.15 has no public getter for the mask a layer attached to its output; MeanMetricWrapper uses this one.
from keras.src.backend import get_keras_mask

_EPSILON = 1e-7

STATISTICS = ("mean", "std", "margin", "nonfinite", "confidence", "entropy", "ece", "brier")
# The columns of the shared state: the calibration bins use the first three.
COLUMNS = ("count", "confidence", "correct", "mean", "square", "margin", "entropy", "brier", "nonfinite")


def positions(y_true, y_pred, sample_weight, *, activation: str, ignore_class: Optional[int] = None):
    """`(rows (P, C) float32, labels or None, weights (P,))`: one row per position.

    All axes of `y_pred` but the last are positions (pixels, tokens); a
    position counts with the weight `sample_weight x Keras mask x (label !=
    ignore_class)`, like Keras' `MeanMetricWrapper` applies an output mask.
    Softmax labels are `(P,)` int32 class ids (ignored ones replaced by 0,
    with weight 0); sigmoid labels `(P, C)` float32 targets.
    """
    mask = get_keras_mask(y_pred)  # before any conversion, which would drop it
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    if mask is not None and len(y_pred.shape) > 1 and len(mask.shape) >= len(y_pred.shape):
        # A mask over the classes (a pointer head's Softmax(mask=)), not over positions: the exposed
        # logits are already the large negative number there, so those classes get probability 0.
        mask = None
    if len(y_pred.shape) == 1:  # one binary logit per sample
        y_pred = ops.expand_dims(y_pred, -1)
    position_shape, num_classes = tuple(y_pred.shape[:-1]), y_pred.shape[-1]
    weights = ops.ones_like(y_pred[..., 0])
    for factor in (mask, sample_weight):
        if factor is not None:
            weights = weights * _over_positions(ops.cast(ops.convert_to_tensor(factor), "float32"), position_shape)
    rows = ops.reshape(y_pred, (-1, num_classes))
    weights = ops.reshape(weights, (-1,))
    labels = None
    if y_true is not None:
        y_true = ops.convert_to_tensor(y_true)
        if activation == "softmax":
            labels, sparse = _class_ids(y_true, y_pred)
            if ignore_class is not None:
                if not sparse:
                    raise ValueError("ignore_class applies to sparse class-id labels; with one-hot labels "
                                     "give the positions to skip a sample_weight of 0.")
                kept = ops.not_equal(labels, ignore_class)
                weights = weights * ops.cast(kept, "float32")
                labels = ops.where(kept, labels, 0)  # torch's one_hot refuses ids out of range
        else:
            labels = ops.reshape(ops.cast(y_true, "float32"), ops.shape(rows))
    return rows, labels, weights


def _over_positions(factor, position_shape):
    """A `(batch,)`, `(batch, 1)` or `(batch, ...)` weight or mask, shaped to broadcast over the positions."""
    rank = len(position_shape)
    while (len(factor.shape) > 1 and factor.shape[-1] == 1
           and (len(factor.shape) > rank or position_shape[len(factor.shape) - 1] != 1)):
        factor = ops.squeeze(factor, axis=-1)  # Keras' (batch, 1) sample weights
    while len(factor.shape) < rank:
        factor = ops.expand_dims(factor, -1)
    return factor


def _class_ids(y_true, y_pred):
    """`((P,) int32 class ids, whether they were sparse)` from ids `(batch, ...)`, `(batch, ..., 1)` or one-hot."""
    num_classes = y_pred.shape[-1]
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == num_classes and num_classes > 1:
        return ops.reshape(ops.cast(ops.argmax(y_true, axis=-1), "int32"), (-1,)), False
    return ops.reshape(ops.cast(y_true, "int32"), (-1,)), True


def _nan_unless_valid(values, labels, num_classes):
    """NaN where a class id is outside [0, num_classes): an unlisted void label (255) must not pass as a class.

    Inside a compiled step there is no way to raise; NaN in the logs is the loud answer.
    """
    return ops.where(ops.logical_and(labels >= 0, labels < num_classes), values, float("nan"))


def weighted(values, weights):
    """`values * weights`, 0 where the weight is 0 (a NaN logit in a padded position must not count)."""
    return ops.where(weights > 0, values * weights, 0.0)


def per_position(rows, labels, *, activation: str, from_logits: bool) -> Dict[str, object]:
    """Every per-position statistic of `(P, C)` rows, each `(P,)`, and the calibration decisions.

    `mean`/`square`: mean logit and squared logit over the classes; `margin`:
    top-1 minus top-2 logit (sigmoid: mean |logit|); `nonfinite`: NaN/inf
    values; `confidence`, `entropy` (nats, from log-probabilities so that a
    saturated softmax gives no log(0)), `brier` (sigmoid: means over units).
    `decisions`: `(confidence, correct, units)` of each calibration decision,
    a position for softmax, a unit (`units` of them per position) for sigmoid.
    Entries that need labels are absent when `labels` is None.
    """
    num_classes = rows.shape[-1]
    values = {"mean": ops.mean(rows, axis=-1), "square": ops.mean(ops.square(rows), axis=-1),
              "nonfinite": ops.sum(1.0 - ops.cast(ops.isfinite(rows), "float32"), axis=-1)}
    if activation == "sigmoid":
        probabilities = ops.sigmoid(rows) if from_logits else rows
        values["margin"] = ops.mean(ops.abs(rows), axis=-1)
        values["confidence"] = ops.mean(ops.maximum(probabilities, 1.0 - probabilities), axis=-1)
        if from_logits:
            # log(sigmoid(x)) = -softplus(-x), log(1 - sigmoid(x)) = -softplus(x).
            entropy = probabilities * ops.softplus(-rows) + (1.0 - probabilities) * ops.softplus(rows)
        else:
            p = ops.clip(rows, _EPSILON, 1.0 - _EPSILON)
            entropy = -p * ops.log(p) - (1.0 - p) * ops.log(1.0 - p)
        values["entropy"] = ops.mean(entropy, axis=-1)
        if labels is not None:
            values["brier"] = ops.mean(ops.square(probabilities - labels), axis=-1)
            correct = ops.cast(ops.equal(probabilities >= 0.5, labels >= 0.5), "float32")
            confidence = ops.maximum(probabilities, 1.0 - probabilities)
            values["decisions"] = (ops.reshape(confidence, (-1,)), ops.reshape(correct, (-1,)), num_classes)
        return values
    # Top two by max / argmax / max again: XLA's CPU top_k is a sort, three times the cost of the step's math.
    top = ops.max(rows, axis=-1)
    top_index = ops.cast(ops.argmax(rows, axis=-1), "int32")
    if num_classes == 1:  # a softmax over one class: probability 1, margin |logit| as for a sigmoid unit
        values["margin"] = ops.abs(top)
    else:
        is_top = ops.equal(ops.arange(num_classes, dtype="int32")[None, :], top_index[:, None])
        values["margin"] = top - ops.max(ops.where(is_top, float("-inf"), rows), axis=-1)
    if from_logits:
        # Shifted by the top logit: one exp gives the probabilities, the confidence
        # (1 / sum of exps) and the log-probabilities, without the log(0) of a saturated softmax.
        shifted = rows - top[:, None]
        exps = ops.exp(shifted)
        total = ops.sum(exps, axis=-1)
        probabilities = exps / total[:, None]
        confidence = 1.0 / total
        entropy = ops.log(total) - ops.sum(probabilities * shifted, axis=-1)
        predicted = top_index
    else:
        probabilities, confidence, predicted = rows, top, top_index
        entropy = -ops.sum(rows * ops.log(ops.clip(rows, _EPSILON, 1.0)), axis=-1)
    values["confidence"], values["entropy"] = confidence, entropy
    if labels is not None:
        # Clipped for one_hot (torch refuses ids out of range); the NaN marks them instead.
        target = ops.one_hot(ops.clip(labels, 0, num_classes - 1), num_classes, dtype="float32")
        brier = ops.sum(ops.square(probabilities - target), axis=-1)
        correct = ops.cast(ops.equal(predicted, labels), "float32")
        brier, correct = ops.unstack(_nan_unless_valid(ops.stack([brier, correct]), labels, num_classes))
        values["brier"], values["decisions"] = brier, (confidence, correct, 1)
    return values


def bin_sums(decisions, weights, num_bins: int):
    """`(num_bins, 3)`: per equal-width confidence bin, the weighted count, confidence and correct sums.

    One one-hot matmul (fixed shapes: no bincount, no boolean_mask, so XLA
    and TPU take it); a sigmoid position's weight goes to each of its units.
    """
    confidence, correct, units = decisions
    if units > 1:
        weights = ops.reshape(ops.repeat(weights[:, None], units, axis=1), (-1,))
    columns = ops.stack([weights, confidence * weights, correct * weights], axis=1)
    columns = ops.where((weights > 0)[:, None], columns, 0.0)
    return ops.matmul(ops.transpose(ops.one_hot(_bin_index(confidence, num_bins), num_bins, dtype="float32")), columns)


def _bin_index(confidence, num_bins: int):
    return ops.clip(ops.cast(ops.floor(confidence * num_bins), "int32"), 0, num_bins - 1)


def statistic_sums(rows, labels, weights, *, activation: str, from_logits: bool, num_bins: int):
    """The `((2 + num_bins) * 9,)` sums one batch adds to the shared state: what `statistics_from_sums` reads.

    A `(2 + num_bins, 9)` matrix, flattened: per column of `COLUMNS`, the
    weighted sum over positions, the unweighted sum over counted positions,
    then the weighted sum in each confidence bin (sigmoid: over units, first
    three columns only). Softmax takes all of it from one matmul: every extra
    kernel is paid per step on TensorFlow's CPU executor.
    """
    values = per_position(rows, labels, activation=activation, from_logits=from_logits)
    confidence, correct, units = values["decisions"]
    ones = ops.ones_like(weights)
    kept = (weights > 0)[:, None]
    columns = {**values, "count": ones, "correct": correct if units == 1 else ops.zeros_like(weights)}
    counted = ops.where(kept, ops.stack([columns[name] for name in COLUMNS], axis=1), 0.0)
    totals = ops.stack([weights, ones], axis=1)
    if units == 1:
        bins = ops.one_hot(_bin_index(confidence, num_bins), num_bins, dtype="float32") * weights[:, None]
        return ops.reshape(ops.matmul(ops.transpose(ops.concatenate([totals, bins], axis=1)), counted), (-1,))
    per_unit = ops.pad(bin_sums(values["decisions"], weights, num_bins), [[0, 0], [0, len(COLUMNS) - 3]])
    return ops.reshape(ops.concatenate([ops.matmul(ops.transpose(totals), counted), per_unit], axis=0), (-1,))


def statistics_from_sums(sums, num_bins: int) -> Dict[str, object]:
    """`{statistic: scalar}` for every name in `STATISTICS`, from accumulated `statistic_sums` (0 before any)."""
    table = ops.reshape(sums, (2 + num_bins, len(COLUMNS)))
    means = ops.divide_no_nan(table[0], table[0, 0])
    results = {name: means[COLUMNS.index(name)] for name in ("mean", "margin", "confidence", "entropy", "brier")}
    results["std"] = ops.sqrt(ops.maximum(means[COLUMNS.index("square")] - ops.square(results["mean"]), 0.0))
    results["nonfinite"] = table[1, COLUMNS.index("nonfinite")]
    results["ece"] = expected_calibration_error(table[2:, 0], table[2:, 1], table[2:, 2])
    return results


def expected_calibration_error(bin_counts, bin_confidence, bin_correct):
    """Sum over bins of |confidence sum - correct sum|, over the number of decisions (Guo et al., 2017)."""
    return ops.divide_no_nan(ops.sum(ops.abs(bin_confidence - bin_correct)), ops.sum(bin_counts))

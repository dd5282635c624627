"""In-step metrics of a classifier's logits and probabilities.

They run inside the compiled train/test step: fixed-shape state, `keras.ops`
only, no Python side effects, so they work with `jit_compile=True`,
`steps_per_execution > 1`, `tf.distribute` (state summed over replicas) and TPU.

Attach them to the exposed model's `"logits"` output. Keras only updates metrics
of outputs that have a loss, and the logits output is the one trained with
`from_logits=True`; probability statistics are computed from the logits with
the head's `activation` (`from_logits=False` takes probabilities instead).

Monitoring: `ece`, `brier` and `nonfinite` declare that lower is better
(`_direction`), which Keras' `mode="auto"` reads only when the logged name
is the metric's own name: on a single-output model (a `logits_model`,
`monitor="val_ece"`). On an exposed model the names carry the output
(`val_logits_ece`) and Keras 3.15 cannot match them: pass `mode="min"` to
`EarlyStopping`, `ModelCheckpoint` and `ReduceLROnPlateau`, or list a
`keras_logits.callbacks.LogitsLogger` in the same `fit`, which sets their
direction from the metric.

Example:

>>> import keras, numpy as np, keras_logits
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
>>> exposed = keras_logits.expose(model)
>>> exposed.compile(
...     optimizer="adam",
...     loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
...     metrics={"logits": keras_logits.metrics.default_metrics("softmax")})
>>> history = exposed.fit(np.ones((8, 4)), np.zeros(8), epochs=1, verbose=0)
>>> sorted(key for key in history.history if key.startswith("logits_"))[:4]
['logits_brier', 'logits_confidence', 'logits_ece', 'logits_entropy']
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops
# Keras 3.15 has no public getter for the mask a layer attached to its output; MeanMetricWrapper uses this one.
from keras.src.backend import get_keras_mask

from keras_logits._activations import check_activation

_EPSILON = 1e-7


class _LogitsMetric(keras.metrics.Metric):
    """Shared set-up: the activation, whether inputs are logits, and the positions that count.

    All axes of `y_pred` but the last are positions (pixels, tokens); a
    position counts with the weight `sample_weight x Keras mask x (label !=
    ignore_class)`, like Keras' `MeanMetricWrapper` applies an output mask.
    """

    def __init__(self, activation: str = "softmax", from_logits: bool = True, ignore_class: Optional[int] = None,
                 name=None, dtype=None):
        check_activation(activation)
        if ignore_class is not None and activation != "softmax":
            raise ValueError("ignore_class applies to sparse class-id labels of softmax heads; for a sigmoid head, "
                             "drop positions with a sample_weight of 0 (or a Keras mask).")
        super().__init__(name=name, dtype=dtype)
        self.activation = activation
        self.from_logits = from_logits
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def _scalar(self, name):
        return self.add_variable(shape=(), initializer="zeros", name=name, aggregation="sum")

    def _probabilities(self, rows):
        if not self.from_logits:
            return rows
        return ops.softmax(rows, axis=-1) if self.activation == "softmax" else ops.sigmoid(rows)

    def _positions(self, y_true, y_pred, sample_weight):
        """`(rows (P, C) float32, labels or None, weights (P,))`: one row per position.

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
                weights = weights * _over_positions(ops.cast(ops.convert_to_tensor(factor), "float32"),
                                                    position_shape)
        rows = ops.reshape(y_pred, (-1, num_classes))
        weights = ops.reshape(weights, (-1,))
        labels = None
        if y_true is not None:
            y_true = ops.convert_to_tensor(y_true)
            if self.activation == "softmax":
                labels, sparse = _class_ids(y_true, y_pred)
                if self.ignore_class is not None:
                    if not sparse:
                        raise ValueError("ignore_class applies to sparse class-id labels; with one-hot labels "
                                         "give the positions to skip a sample_weight of 0.")
                    kept = ops.not_equal(labels, self.ignore_class)
                    weights = weights * ops.cast(kept, "float32")
                    labels = ops.where(kept, labels, 0)  # torch's one_hot refuses ids out of range
            else:
                labels = ops.reshape(ops.cast(y_true, "float32"), ops.shape(rows))
        return rows, labels, weights

    def get_config(self):
        return {**super().get_config(), "activation": self.activation, "from_logits": self.from_logits,
                "ignore_class": self.ignore_class}


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


def _weighted(values, weights):
    """`values * weights`, 0 where the weight is 0 (a NaN logit in a padded position must not count)."""
    return ops.where(weights > 0, values * weights, 0.0)


class _WeightedMean(_LogitsMetric):
    """Mean over positions of a per-position statistic, weighted."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.total = self._scalar("total")
        self.count = self._scalar("count")

    def per_position(self, labels, rows):
        """`(P,)` statistic of `(P, C)` rows."""
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        rows, labels, weights = self._positions(y_true, y_pred, sample_weight)
        self.total.assign_add(ops.sum(_weighted(self.per_position(labels, rows), weights)))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)


@keras.saving.register_keras_serializable(package="keras_logits")
class LogitMean(_WeightedMean):
    """Mean of the logits over positions and classes.

    Example:

    >>> m = LogitMean(); m.update_state(None, [[1.0, 3.0], [0.0, 0.0]]); float(m.result())
    1.0
    """

    def __init__(self, name="mean", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_position(self, labels, rows):
        return ops.mean(rows, axis=-1)


@keras.saving.register_keras_serializable(package="keras_logits")
class LogitStd(_LogitsMetric):
    """Standard deviation of all logit values seen this epoch (streaming first and second moments).

    Example:

    >>> m = LogitStd(); m.update_state(None, [[1.0, 3.0], [1.0, 3.0]]); float(m.result())
    1.0
    """

    def __init__(self, name="std", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self._scalar("total")
        self.total_squares = self._scalar("total_squares")
        self.count = self._scalar("count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        rows, _, weights = self._positions(y_true, y_pred, sample_weight)
        self.total.assign_add(ops.sum(_weighted(ops.sum(rows, axis=-1), weights)))
        self.total_squares.assign_add(ops.sum(_weighted(ops.sum(ops.square(rows), axis=-1), weights)))
        self.count.assign_add(ops.sum(weights) * rows.shape[-1])

    def result(self):
        mean = ops.divide_no_nan(self.total, self.count)
        variance = ops.divide_no_nan(self.total_squares, self.count) - ops.square(mean)
        return ops.sqrt(ops.maximum(variance, 0.0))


@keras.saving.register_keras_serializable(package="keras_logits")
class TopMargin(_WeightedMean):
    """Mean top-1 margin in logit units.

    Softmax: largest minus second-largest logit. Sigmoid: mean |logit|, the
    distance from the 0.5 decision boundary.

    Example:

    >>> m = TopMargin(); m.update_state(None, [[1.0, 4.0, 2.0]]); float(m.result())
    2.0
    """

    def __init__(self, name="margin", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_position(self, labels, rows):
        if self.activation == "sigmoid" or rows.shape[-1] == 1:
            return ops.mean(ops.abs(rows), axis=-1)
        top_two, _ = ops.top_k(rows, k=2)
        return top_two[:, 0] - top_two[:, 1]


@keras.saving.register_keras_serializable(package="keras_logits")
class MeanConfidence(_WeightedMean):
    """Mean confidence: the largest probability (softmax) or mean max(p, 1 - p) (sigmoid).

    Example:

    >>> m = MeanConfidence(from_logits=False); m.update_state(None, [[0.2, 0.8], [0.6, 0.4]])
    >>> round(float(m.result()), 4)
    0.7
    """

    def __init__(self, name="confidence", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_position(self, labels, rows):
        probabilities = self._probabilities(rows)
        if self.activation == "softmax":
            return ops.max(probabilities, axis=-1)
        return ops.mean(ops.maximum(probabilities, 1.0 - probabilities), axis=-1)


@keras.saving.register_keras_serializable(package="keras_logits")
class MeanEntropy(_WeightedMean):
    """Mean predictive entropy in nats (sigmoid: mean binary entropy per unit).

    Computed from logits with log-softmax / softplus, so saturated probabilities
    do not give log(0).

    Example:

    >>> m = MeanEntropy(); m.update_state(None, [[0.0, 0.0]]); round(float(m.result()), 4)
    0.6931
    """

    def __init__(self, name="entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_position(self, labels, rows):
        if self.activation == "softmax":
            if self.from_logits:
                log_p = ops.log_softmax(rows, axis=-1)
            else:
                log_p = ops.log(ops.clip(rows, _EPSILON, 1.0))
            return -ops.sum(ops.exp(log_p) * log_p, axis=-1)
        if self.from_logits:
            # log(sigmoid(x)) = -softplus(-x), log(1 - sigmoid(x)) = -softplus(x).
            p = ops.sigmoid(rows)
            entropy = p * ops.softplus(-rows) + (1.0 - p) * ops.softplus(rows)
        else:
            p = ops.clip(rows, _EPSILON, 1.0 - _EPSILON)
            entropy = -p * ops.log(p) - (1.0 - p) * ops.log(1.0 - p)
        return ops.mean(entropy, axis=-1)


@keras.saving.register_keras_serializable(package="keras_logits")
class NonFiniteLogits(_LogitsMetric):
    """Number of NaN or infinite logit values seen this epoch, at the positions that count.

    Lower is better (`EarlyStopping(mode="auto")` knows it).

    Example:

    >>> m = NonFiniteLogits(); m.update_state(None, [[1.0, float("nan")], [float("inf"), 0.0]])
    >>> int(m.result())
    2
    """

    def __init__(self, name="nonfinite", **kwargs):
        super().__init__(name=name, **kwargs)
        self.count = self._scalar("count")
        self._direction = "down"

    def update_state(self, y_true, y_pred, sample_weight=None):
        rows, _, weights = self._positions(y_true, y_pred, sample_weight)
        nonfinite = ops.sum(1.0 - ops.cast(ops.isfinite(rows), "float32"), axis=-1)
        self.count.assign_add(ops.sum(ops.where(weights > 0, nonfinite, 0.0)))

    def result(self):
        return ops.convert_to_tensor(self.count)  # A tensor, not the variable (JAX traces results).


@keras.saving.register_keras_serializable(package="keras_logits")
class ExpectedCalibrationError(_LogitsMetric):
    """Streaming expected calibration error over `num_bins` equal-width confidence bins.

    ECE = sum over bins of |sum of confidences - number correct| / number of
    predictions (weighted). Softmax: every position is a prediction, its
    confidence the top probability, correct when the argmax equals the label.
    Sigmoid: every unit is a binary prediction with confidence max(p, 1 - p).
    State is three `(num_bins,)` vectors, filled with one-hot bin masks (no
    bincount, no boolean_mask). Lower is better.

    Reference: Guo et al., "On Calibration of Modern Neural Networks", 2017.

    Example:

    >>> m = ExpectedCalibrationError(num_bins=10, from_logits=False)
    >>> m.update_state([1, 0], [[0.1, 0.9], [0.3, 0.7]])
    >>> round(float(m.result()), 4)  # bin 0.9: |0.9 - 1|, bin 0.7: |0.7 - 0|
    0.4
    """

    def __init__(self, num_bins: int = 15, name="ece", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_bins = int(num_bins)
        self._direction = "down"
        vector = dict(shape=(self.num_bins,), initializer="zeros", aggregation="sum")
        self.bin_counts = self.add_variable(name="bin_counts", **vector)
        self.bin_confidence = self.add_variable(name="bin_confidence", **vector)
        self.bin_correct = self.add_variable(name="bin_correct", **vector)

    def update_state(self, y_true, y_pred, sample_weight=None):
        rows, labels, weights = self._positions(y_true, y_pred, sample_weight)
        probabilities = self._probabilities(rows)
        if self.activation == "softmax":
            predicted = ops.cast(ops.argmax(probabilities, axis=-1), "int32")
            correct = _nan_unless_valid(ops.cast(ops.equal(predicted, labels), "float32"), labels, rows.shape[-1])
            confidence = ops.max(probabilities, axis=-1)
        else:  # every unit is a decision, weighted like its position
            positive = ops.cast(probabilities >= 0.5, "float32")
            correct = ops.reshape(ops.cast(ops.equal(positive, ops.cast(labels >= 0.5, "float32")), "float32"), (-1,))
            confidence = ops.reshape(ops.maximum(probabilities, 1.0 - probabilities), (-1,))
            weights = ops.reshape(ops.repeat(weights[:, None], rows.shape[-1], axis=1), (-1,))
        index = ops.clip(ops.cast(ops.floor(confidence * self.num_bins), "int32"), 0, self.num_bins - 1)
        bins = ops.one_hot(index, self.num_bins, dtype="float32") * weights[:, None]
        self.bin_counts.assign_add(ops.sum(bins, axis=0))
        self.bin_confidence.assign_add(ops.sum(ops.where(bins > 0, bins * confidence[:, None], 0.0), axis=0))
        self.bin_correct.assign_add(ops.sum(ops.where(bins > 0, bins * correct[:, None], 0.0), axis=0))

    def result(self):
        gaps = ops.abs(self.bin_confidence - self.bin_correct)
        return ops.divide_no_nan(ops.sum(gaps), ops.sum(self.bin_counts))

    def get_config(self):
        return {**super().get_config(), "num_bins": self.num_bins}


@keras.saving.register_keras_serializable(package="keras_logits")
class BrierScore(_WeightedMean):
    """Mean Brier score: sum over classes of (p - one_hot(label))^2 (sigmoid: mean over units).

    Lower is better.

    Example:

    >>> m = BrierScore(from_logits=False); m.update_state([1], [[0.2, 0.8]]); round(float(m.result()), 4)
    0.08
    """

    def __init__(self, name="brier", **kwargs):
        super().__init__(name=name, **kwargs)
        self._direction = "down"

    def per_position(self, labels, rows):
        probabilities = self._probabilities(rows)
        if self.activation == "softmax":
            num_classes = rows.shape[-1]
            # Clipped for one_hot (torch refuses ids out of range); the NaN marks them instead.
            target = ops.one_hot(ops.clip(labels, 0, num_classes - 1), num_classes, dtype="float32")
            return _nan_unless_valid(ops.sum(ops.square(probabilities - target), axis=-1), labels, num_classes)
        return ops.mean(ops.square(probabilities - labels), axis=-1)


def default_metrics(activation: str = "softmax", *, num_bins: int = 15, ignore_class: Optional[int] = None) -> list:
    """The metrics to attach to the `"logits"` output: a fresh list each call.

    Logit mean and std, top-1 margin, non-finite count, and from the
    probabilities: confidence, entropy, expected calibration error and Brier
    score. History keys read `logits_mean`, `logits_ece`, ... Every axis of
    the output but the last is a position (pixels, tokens); Keras output masks
    and per-position sample weights are honoured, and positions whose sparse
    label is `ignore_class` (e.g. 255 "void" pixels) are left out of all eight;
    any other class id outside [0, C) makes ECE and Brier NaN rather than a
    wrong number. ECE, Brier and the non-finite count declare that lower is
    better. Keras passes `sample_weight` only to `weighted_metrics`, not to
    `metrics`: for per-position weights, compile these as
    `weighted_metrics={"logits": default_metrics(...)}`. A Keras mask of the
    logits' own shape (a pointer head, `Softmax()(scores, mask=mask)` over
    `(batch, T)` scores) masks classes, not positions: those classes have
    probability 0 and count as such; the logit mean and std then include
    their large negative logits.

    Example:

    >>> [m.name for m in default_metrics("sigmoid")]
    ['mean', 'std', 'margin', 'nonfinite', 'confidence', 'entropy', 'ece', 'brier']
    """
    common = dict(activation=activation, ignore_class=ignore_class)
    return [
        LogitMean(**common),
        LogitStd(**common),
        TopMargin(**common),
        NonFiniteLogits(**common),
        MeanConfidence(**common),
        MeanEntropy(**common),
        ExpectedCalibrationError(num_bins=num_bins, **common),
        BrierScore(**common),
    ]

"""In-step metrics of a classifier's logits and probabilities.

They run inside the compiled train/test step: fixed-shape state, `keras.ops`
only, no Python side effects, so they work with `jit_compile=True`,
`steps_per_execution > 1`, `tf.distribute` (state summed over replicas) and TPU.

Attach them to the exposed model's `"logits"` output. Keras only updates metrics
of outputs that have a loss, and the logits output is the one trained with
`from_logits=True`; probability statistics are computed from the logits with
the head's `activation` (`from_logits=False` takes probabilities instead).

`default_metrics()` is the fast path: its eight metrics share one pass and
one state vector (`_shared_statistics`); each class on its own keeps its
own state. The math of both is `_metric_math`.

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

from keras_logits import _metric_math as math
from keras_logits._shared_statistics import SharedStatistics
from keras_logits._activations import check_activation


class _LogitsMetric(keras.metrics.Metric):
    """Shared set-up: the activation, whether inputs are logits, the positions that count, and sharing.

    All axes of `y_pred` but the last are positions (pixels, tokens); a
    position counts with the weight `sample_weight x Keras mask x (label !=
    ignore_class)`. A metric made by `default_metrics()` holds no state of its
    own: it reads its `statistic` from the list's `SharedStatistics`.
    """

    statistic = None  # its name in keras_logits._metric_math

    def __init__(self, activation: str = "softmax", from_logits: bool = True, ignore_class: Optional[int] = None,
                 name=None, dtype=None, _shared=None):
        check_activation(activation)
        if ignore_class is not None and activation != "softmax":
            raise ValueError("ignore_class applies to sparse class-id labels of softmax heads; for a sigmoid head, "
                             "drop positions with a sample_weight of 0 (or a Keras mask).")
        super().__init__(name=name, dtype=dtype)
        self.activation = activation
        self.from_logits = from_logits
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        if _shared is None:
            self._shared = None
            self._build_state()
        else:
            shared, owner = _shared
            self._calls = 0
            if owner:
                self._shared = shared  # tracked: its state vector is one of this metric's variables
            else:
                object.__setattr__(self, "_shared", shared)  # untracked: the vector is counted once, by its owner
            self._owns_shared = owner

    def _build_state(self):
        raise NotImplementedError

    def _scalar(self, name):
        return self.add_variable(shape=(), initializer="zeros", name=name, aggregation="sum")

    def _positions(self, y_true, y_pred, sample_weight):
        return math.positions(y_true, y_pred, sample_weight, activation=self.activation,
                              ignore_class=self.ignore_class)

    def _per_position(self, labels, rows):
        return math.per_position(rows, labels, activation=self.activation, from_logits=self.from_logits)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self._shared is None:
            self._update(*self._positions(y_true, y_pred, sample_weight))
        else:
            self._shared.update_for(self, y_true, y_pred, sample_weight)

    def result(self):
        if self._shared is None:
            return self._result()
        return self._shared.statistic(self.statistic)

    def reset_state(self):
        if self._shared is None:
            super().reset_state()
        elif self._owns_shared:
            self._shared.reset_state()

    def get_config(self):
        return {**super().get_config(), "activation": self.activation, "from_logits": self.from_logits,
                "ignore_class": self.ignore_class}


class _WeightedMean(_LogitsMetric):
    """Mean over positions of a per-position statistic, weighted."""

    def _build_state(self):
        self.total = self._scalar("total")
        self.count = self._scalar("count")

    def _update(self, rows, labels, weights):
        self.total.assign_add(ops.sum(math.weighted(self._per_position(labels, rows)[self.statistic], weights)))
        self.count.assign_add(ops.sum(weights))

    def _result(self):
        return ops.divide_no_nan(self.total, self.count)


@keras.saving.register_keras_serializable(package="keras_logits")
class LogitMean(_WeightedMean):
    """Mean of the logits over positions and classes.

    Example:

    >>> m = LogitMean(); m.update_state(None, [[1.0, 3.0], [0.0, 0.0]]); float(m.result())
    1.0
    """

    statistic = "mean"

    def __init__(self, name="mean", **kwargs):
        super().__init__(name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_logits")
class LogitStd(_LogitsMetric):
    """Standard deviation of all logit values seen this epoch (streaming first and second moments).

    Example:

    >>> m = LogitStd(); m.update_state(None, [[1.0, 3.0], [1.0, 3.0]]); float(m.result())
    1.0
    """

    statistic = "std"

    def __init__(self, name="std", **kwargs):
        super().__init__(name=name, **kwargs)

    def _build_state(self):
        self.total = self._scalar("total")
        self.total_squares = self._scalar("total_squares")
        self.count = self._scalar("count")

    def _update(self, rows, labels, weights):
        values = self._per_position(None, rows)
        self.total.assign_add(ops.sum(math.weighted(values["mean"], weights)))
        self.total_squares.assign_add(ops.sum(math.weighted(values["square"], weights)))
        self.count.assign_add(ops.sum(weights))

    def _result(self):
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

    statistic = "margin"

    def __init__(self, name="margin", **kwargs):
        super().__init__(name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_logits")
class MeanConfidence(_WeightedMean):
    """Mean confidence: the largest probability (softmax) or mean max(p, 1 - p) (sigmoid).

    Example:

    >>> m = MeanConfidence(from_logits=False); m.update_state(None, [[0.2, 0.8], [0.6, 0.4]])
    >>> round(float(m.result()), 4)
    0.7
    """

    statistic = "confidence"

    def __init__(self, name="confidence", **kwargs):
        super().__init__(name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_logits")
class MeanEntropy(_WeightedMean):
    """Mean predictive entropy in nats (sigmoid: mean binary entropy per unit).

    Computed from logits with log-softmax / softplus, so saturated probabilities
    do not give log(0).

    Example:

    >>> m = MeanEntropy(); m.update_state(None, [[0.0, 0.0]]); round(float(m.result()), 4)
    0.6931
    """

    statistic = "entropy"

    def __init__(self, name="entropy", **kwargs):
        super().__init__(name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_logits")
class NonFiniteLogits(_LogitsMetric):
    """Number of NaN or infinite logit values seen this epoch, at the positions that count.

    Lower is better (`EarlyStopping(mode="auto")` knows it).

    Example:

    >>> m = NonFiniteLogits(); m.update_state(None, [[1.0, float("nan")], [float("inf"), 0.0]])
    >>> int(m.result())
    2
    """

    statistic = "nonfinite"
    _direction = "down"

    def __init__(self, name="nonfinite", **kwargs):
        super().__init__(name=name, **kwargs)

    def _build_state(self):
        self.count = self._scalar("count")

    def _update(self, rows, labels, weights):
        nonfinite = self._per_position(None, rows)["nonfinite"]
        self.count.assign_add(ops.sum(ops.where(weights > 0, nonfinite, 0.0)))

    def _result(self):
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

    statistic = "ece"
    _direction = "down"

    def __init__(self, num_bins: int = 15, name="ece", **kwargs):
        self.num_bins = int(num_bins)  # before the state it sizes
        super().__init__(name=name, **kwargs)

    def _build_state(self):
        vector = dict(shape=(self.num_bins,), initializer="zeros", aggregation="sum")
        self.bin_counts = self.add_variable(name="bin_counts", **vector)
        self.bin_confidence = self.add_variable(name="bin_confidence", **vector)
        self.bin_correct = self.add_variable(name="bin_correct", **vector)

    def _update(self, rows, labels, weights):
        bins = math.bin_sums(self._per_position(labels, rows)["decisions"], weights, self.num_bins)
        self.bin_counts.assign_add(bins[:, 0])
        self.bin_confidence.assign_add(bins[:, 1])
        self.bin_correct.assign_add(bins[:, 2])

    def _result(self):
        return math.expected_calibration_error(self.bin_counts, self.bin_confidence, self.bin_correct)

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

    statistic = "brier"
    _direction = "down"

    def __init__(self, name="brier", **kwargs):
        super().__init__(name=name, **kwargs)


_CLASSES = (LogitMean, LogitStd, TopMargin, NonFiniteLogits, MeanConfidence, MeanEntropy,
            ExpectedCalibrationError, BrierScore)


def default_metrics(activation: str = "softmax", *, num_bins: int = 15, ignore_class: Optional[int] = None) -> list:
    """The metrics to attach to the `"logits"` output: a fresh list each call, computed in one pass.

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

    The eight share one computation and one state vector, updated by the
    first of the list: compile the list whole and in order (the others
    refuse otherwise). Saved in a compiled model, they reload as the eight
    individual classes, with the same names and values.

    Example:

    >>> [m.name for m in default_metrics("sigmoid")]
    ['mean', 'std', 'margin', 'nonfinite', 'confidence', 'entropy', 'ece', 'brier']
    """
    common = dict(activation=activation, ignore_class=ignore_class)
    shared = SharedStatistics(activation, None if ignore_class is None else int(ignore_class), int(num_bins))
    return [cls(**common, **({"num_bins": num_bins} if cls is ExpectedCalibrationError else {}),
                _shared=(shared, index == 0))
            for index, cls in enumerate(_CLASSES)]

"""In-step metrics of a classifier's logits and probabilities.

They run inside the compiled train/test step: fixed-shape state, `keras.ops`
only, no Python side effects, so they work with `jit_compile=True`,
`steps_per_execution > 1`, `tf.distribute` (state summed over replicas) and TPU.

Attach them to the exposed model's `"logits"` output. Keras only updates metrics
of outputs that have a loss, and the logits output is the one trained with
`from_logits=True`; probability statistics are computed from the logits with
the head's `activation` (`from_logits=False` takes probabilities instead).

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

import keras
from keras import ops

from keras_logits._activations import check_activation

_EPSILON = 1e-7


class _LogitsMetric(keras.metrics.Metric):
    """Shared set-up: the activation, whether inputs are logits, and weighted sums."""

    def __init__(self, activation: str = "softmax", from_logits: bool = True, name=None, dtype=None):
        check_activation(activation)
        super().__init__(name=name, dtype=dtype)
        self.activation = activation
        self.from_logits = from_logits

    def _scalar(self, name):
        return self.add_variable(shape=(), initializer="zeros", name=name, aggregation="sum")

    def _probabilities(self, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        if not self.from_logits:
            return y_pred
        return ops.softmax(y_pred, axis=-1) if self.activation == "softmax" else ops.sigmoid(y_pred)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation, "from_logits": self.from_logits}


def _per_sample_weight(sample_weight, batch_like):
    """A (batch,) float32 weight: ones when None; (batch, 1) weights are flattened."""
    if sample_weight is None:
        return ops.ones((ops.shape(batch_like)[0],), dtype="float32")
    return ops.reshape(ops.cast(sample_weight, "float32"), (-1,))


def _as_tensors(y_true, y_pred):
    y_pred = ops.convert_to_tensor(y_pred)
    return (None if y_true is None else ops.convert_to_tensor(y_true)), y_pred


def _flat_rows(values):
    """(batch, ...) -> (batch, units) so per-sample reductions have one shape."""
    trailing = values.shape[1:]
    if all(size is not None for size in trailing):
        units = 1
        for size in trailing:
            units *= size
        return ops.reshape(values, (-1, units))
    return ops.reshape(values, (ops.shape(values)[0], -1))


def _sparse_labels(y_true, num_classes):
    """Integer class labels from sparse (batch,) / (batch, 1) or one-hot (batch, classes) labels."""
    if len(y_true.shape) >= 2 and y_true.shape[-1] == num_classes and num_classes > 1:
        return ops.argmax(y_true, axis=-1)
    return ops.reshape(ops.cast(y_true, "int32"), (-1,))


class _WeightedMean(_LogitsMetric):
    """Mean over samples of a per-sample statistic, weighted."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.total = self._scalar("total")
        self.count = self._scalar("count")

    def per_sample(self, y_true, y_pred):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _as_tensors(y_true, y_pred)
        values = ops.reshape(self.per_sample(y_true, y_pred), (-1,))
        weight = _per_sample_weight(sample_weight, values)
        self.total.assign_add(ops.sum(values * weight))
        self.count.assign_add(ops.sum(weight))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)


@keras.saving.register_keras_serializable(package="keras_logits")
class LogitMean(_WeightedMean):
    """Mean of the logits over samples and classes.

    Example:

    >>> m = LogitMean(); m.update_state(None, [[1.0, 3.0], [0.0, 0.0]]); float(m.result())
    1.0
    """

    def __init__(self, name="mean", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_sample(self, y_true, y_pred):
        return ops.mean(_flat_rows(ops.cast(y_pred, "float32")), axis=-1)


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
        y_true, y_pred = _as_tensors(y_true, y_pred)
        rows = _flat_rows(ops.cast(y_pred, "float32"))
        weight = _per_sample_weight(sample_weight, rows)[:, None] * ops.ones_like(rows)
        self.total.assign_add(ops.sum(rows * weight))
        self.total_squares.assign_add(ops.sum(ops.square(rows) * weight))
        self.count.assign_add(ops.sum(weight))

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

    def per_sample(self, y_true, y_pred):
        logits = _flat_rows(ops.cast(y_pred, "float32"))
        if self.activation == "sigmoid" or logits.shape[-1] == 1:
            return ops.mean(ops.abs(logits), axis=-1)
        top_two, _ = ops.top_k(logits, k=2)
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

    def per_sample(self, y_true, y_pred):
        probabilities = _flat_rows(self._probabilities(y_pred))
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

    def per_sample(self, y_true, y_pred):
        values = ops.cast(y_pred, "float32")
        if self.activation == "softmax":
            if self.from_logits:
                log_p = ops.log_softmax(values, axis=-1)
            else:
                log_p = ops.log(ops.clip(values, _EPSILON, 1.0))
            return -ops.sum(ops.exp(log_p) * log_p, axis=-1)
        rows = _flat_rows(values)
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
    """Number of NaN or infinite logit values seen this epoch.

    Example:

    >>> m = NonFiniteLogits(); m.update_state(None, [[1.0, float("nan")], [float("inf"), 0.0]])
    >>> int(m.result())
    2
    """

    def __init__(self, name="nonfinite", **kwargs):
        super().__init__(name=name, **kwargs)
        self.count = self._scalar("count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _as_tensors(y_true, y_pred)
        finite = ops.cast(ops.isfinite(ops.cast(y_pred, "float32")), "float32")
        self.count.assign_add(ops.sum(1.0 - finite))

    def result(self):
        return ops.convert_to_tensor(self.count)  # A tensor, not the variable (JAX traces results).


@keras.saving.register_keras_serializable(package="keras_logits")
class ExpectedCalibrationError(_LogitsMetric):
    """Streaming expected calibration error over `num_bins` equal-width confidence bins.

    ECE = sum over bins of |sum of confidences - number correct| / number of
    predictions. Softmax: confidence is the top probability, correct means
    argmax equals the label. Sigmoid: every unit is a binary prediction with
    confidence max(p, 1 - p). State is three `(num_bins,)` vectors, filled with
    one-hot bin masks (no bincount, no boolean_mask).

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
        vector = dict(shape=(self.num_bins,), initializer="zeros", aggregation="sum")
        self.bin_counts = self.add_variable(name="bin_counts", **vector)
        self.bin_confidence = self.add_variable(name="bin_confidence", **vector)
        self.bin_correct = self.add_variable(name="bin_correct", **vector)

    def _confidence_and_correct(self, y_true, y_pred):
        probabilities = self._probabilities(y_pred)
        if self.activation == "softmax":
            rows = ops.reshape(probabilities, (-1, probabilities.shape[-1]))
            labels = _sparse_labels(y_true, rows.shape[-1])
            predicted = ops.cast(ops.argmax(rows, axis=-1), "int32")
            correct = ops.cast(ops.equal(predicted, ops.cast(labels, "int32")), "float32")
            return ops.max(rows, axis=-1), correct, None
        rows = _flat_rows(probabilities)
        labels = ops.reshape(ops.cast(y_true, "float32"), ops.shape(rows))
        positive = ops.cast(rows >= 0.5, "float32")
        correct = ops.cast(ops.equal(positive, ops.cast(labels >= 0.5, "float32")), "float32")
        return ops.reshape(ops.maximum(rows, 1.0 - rows), (-1,)), ops.reshape(correct, (-1,)), rows.shape[-1]

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _as_tensors(y_true, y_pred)
        confidence, correct, units = self._confidence_and_correct(y_true, y_pred)
        weight = _per_sample_weight(sample_weight, y_pred)
        if units is not None:  # Sigmoid: one weight per unit.
            weight = ops.reshape(ops.repeat(weight[:, None], units, axis=1), (-1,))
        index = ops.clip(ops.cast(ops.floor(confidence * self.num_bins), "int32"), 0, self.num_bins - 1)
        mask = ops.one_hot(index, self.num_bins, dtype="float32") * weight[:, None]
        self.bin_counts.assign_add(ops.sum(mask, axis=0))
        self.bin_confidence.assign_add(ops.sum(mask * confidence[:, None], axis=0))
        self.bin_correct.assign_add(ops.sum(mask * correct[:, None], axis=0))

    def result(self):
        gaps = ops.abs(self.bin_confidence - self.bin_correct)
        return ops.divide_no_nan(ops.sum(gaps), ops.sum(self.bin_counts))

    def get_config(self):
        return {**super().get_config(), "num_bins": self.num_bins}


@keras.saving.register_keras_serializable(package="keras_logits")
class BrierScore(_WeightedMean):
    """Mean Brier score: sum over classes of (p - one_hot(label))^2 (sigmoid: mean over units).

    Example:

    >>> m = BrierScore(from_logits=False); m.update_state([1], [[0.2, 0.8]]); round(float(m.result()), 4)
    0.08
    """

    def __init__(self, name="brier", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_sample(self, y_true, y_pred):
        probabilities = _flat_rows(self._probabilities(y_pred))
        if self.activation == "softmax":
            labels = _sparse_labels(y_true, probabilities.shape[-1])
            target = ops.one_hot(labels, probabilities.shape[-1], dtype="float32")
            return ops.sum(ops.square(probabilities - target), axis=-1)
        target = ops.reshape(ops.cast(y_true, "float32"), ops.shape(probabilities))
        return ops.mean(ops.square(probabilities - target), axis=-1)


def default_metrics(activation: str = "softmax", *, num_bins: int = 15) -> list:
    """The metrics to attach to the `"logits"` output: a fresh list each call.

    Logit mean and std, top-1 margin, non-finite count, and from the
    probabilities: confidence, entropy, expected calibration error and Brier
    score. History keys read `logits_mean`, `logits_ece`, ...

    Example:

    >>> [m.name for m in default_metrics("sigmoid")]
    ['mean', 'std', 'margin', 'nonfinite', 'confidence', 'entropy', 'ece', 'brier']
    """
    common = dict(activation=activation)
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

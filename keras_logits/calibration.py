"""Calibrate a classifier's probabilities and measure how well they are calibrated.

- `TemperatureScaling` fits the temperature `T` that minimises the negative
  log-likelihood of held-out labels under `activation(logits / T)` (Guo et al.
  2017). It never changes the predicted class.
- `reliability_report` gives the expected and maximum calibration error, Brier
  score, NLL, accuracy and the per-bin table of a reliability diagram.

Both run in NumPy (float64) on logits you already have, for example
`expose(model).predict(x)["logits"]`: no model, no backend, no training loop.
The binning is the one of `keras_logits.metrics.ExpectedCalibrationError`:
`num_bins` equal-width confidence bins, bin `i` holding `[i/n, (i+1)/n)` and the
last one also `1.0`.

Example:

>>> import numpy as np
>>> from keras_logits.calibration import TemperatureScaling, reliability_report
>>> rng = np.random.default_rng(0)
>>> labels = rng.integers(0, 3, 2000)
>>> logits = 3.0 * (np.eye(3)[labels] + rng.normal(size=(2000, 3)))  # overconfident
>>> scaler = TemperatureScaling().fit(logits, labels)
>>> round(scaler.temperature, 2)
3.08
>>> before = reliability_report(logits, labels, from_logits=True)
>>> after = reliability_report(scaler.transform(logits), labels, from_logits=True)
>>> bool(after.ece < before.ece / 2), after.accuracy == before.accuracy
(True, True)
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Optional, Union

import numpy as np

from keras_logits._activations import check_activation
from keras_logits.scores import as_logits, log_sigmoid, log_softmax, probabilities
from keras_logits.statistics import calibration_bins, expected_calibration_error, positions

__all__ = ["TemperatureScaling", "ReliabilityReport", "reliability_report", "calibration_bins",
           "expected_calibration_error"]

_PROBABILITY_FLOOR = 1e-15  # log(p) of a probability 0 is clipped here when probabilities are given.


class TemperatureScaling:
    """Fits the temperature that makes `activation(logits / T)` calibrated.

    The negative log-likelihood is convex in the inverse temperature `1 / T`,
    so the fit is a bracketed Newton search to machine precision, not a
    gradient-descent loop with a learning rate.

    Args:
        activation: `"softmax"` (one label per sample) or `"sigmoid"`
            (binary / multi-label).
        per_class: Sigmoid heads only: one temperature per label instead of one
            shared temperature.
        min_temperature, max_temperature: The search range. A fit that ends on
            a bound warns: at `min_temperature` the labels are (nearly)
            separable, so the NLL keeps falling as `T -> 0`; at
            `max_temperature` the logits carry (almost) no information about the
            labels.

    Attributes:
        temperature: The fitted temperature (a float; with `per_class`, a
            `(num_classes,)` array). None before `fit`.
        nll_before, nll_after: Mean NLL of the fit data at `T = 1` and at the
            fitted `T`.

    Example:

    >>> import numpy as np
    >>> logits = np.array([[6.0, 0.0], [0.0, 6.0], [6.0, 0.0], [0.0, 6.0]])
    >>> scaler = TemperatureScaling().fit(logits, [0, 1, 1, 1])  # one in four wrong
    >>> round(scaler.temperature, 3), scaler.predict_proba(logits)[0].round(3).tolist()
    (5.461, [0.75, 0.25])
    """

    def __init__(self, activation: str = "softmax", *, per_class: bool = False,
                 min_temperature: float = 0.01, max_temperature: float = 100.0):
        check_activation(activation)
        if per_class and activation != "sigmoid":
            raise ValueError(
                "per_class=True needs activation='sigmoid': softmax couples the classes, so a "
                "per-class temperature would change which class is predicted. Use one temperature."
            )
        if not 0 < min_temperature < max_temperature < np.inf:
            raise ValueError(
                f"Need 0 < min_temperature < max_temperature < inf, got {min_temperature} and {max_temperature}."
            )
        self.activation = activation
        self.per_class = per_class
        self.min_temperature = float(min_temperature)
        self.max_temperature = float(max_temperature)
        self.temperature: Optional[Union[float, np.ndarray]] = None
        self.nll_before: Optional[float] = None
        self.nll_after: Optional[float] = None

    def __repr__(self) -> str:
        return (f"TemperatureScaling(activation={self.activation!r}, per_class={self.per_class}, "
                f"temperature={self.temperature!r})")

    def fit(self, logits, labels, sample_weight=None, *, mask=None,
            ignore_class: Optional[int] = None) -> "TemperatureScaling":
        """Fits the temperature on held-out `logits` and `labels`; returns self.

        Every position of a per-position head (pixel, token) is one prediction.

        Args:
            logits: `(num_samples, num_classes)` or `(batch, ..., num_classes)`
                logits (not probabilities).
            labels: Softmax: class ids `(batch, ...)` or one-hot / soft
                labels of the logits' shape. Sigmoid: 0/1 (or soft) targets
                of the logits' shape.
            sample_weight: Optional non-negative weights, `(batch,)` or per
                position `(batch, ...)`.
            mask: Optional `(batch, ...)`, truthy where a position counts
                (e.g. not padding).
            ignore_class: A class id whose positions are left out (e.g. 255
                "void" pixels).

        Example:

        >>> import numpy as np
        >>> pixels = np.zeros((1, 2, 2, 2)); pixels[..., 0] = 4.0        # one 2x2 image, class 0 wins
        >>> labels = np.array([[[0, 1], [255, 0]]])                      # one void pixel
        >>> round(TemperatureScaling().fit(pixels, labels, ignore_class=255).temperature, 3)
        5.771
        """
        kept = positions(logits, labels, activation=self.activation, mask=mask, sample_weight=sample_weight,
                         ignore_class=ignore_class, soft_labels=True)
        logits = kept.values
        if len(logits) == 0:
            raise ValueError(_nothing_left("TemperatureScaling.fit", sample_weight))
        targets = _targets(kept.labels, logits, self.activation)
        weights = kept.weights / kept.weights.sum()
        if not np.all(np.isfinite(logits)):
            raise ValueError(
                f"logits contain {int(np.sum(~np.isfinite(logits)))} NaN/inf values; a temperature "
                "cannot be fitted to them. Drop those samples (keras_logits.metrics.NonFiniteLogits counts them)."
            )
        low, high = 1.0 / self.max_temperature, 1.0 / self.min_temperature
        if self.activation == "softmax":
            inverse = _newton(lambda s: _softmax_derivatives(s, logits, targets, weights), low, high, shape=())
        elif self.per_class:
            inverse = _newton(lambda s: _sigmoid_derivatives(s, logits, targets, weights),
                              low, high, shape=(logits.shape[1],))
        else:
            inverse = _newton(
                lambda s: tuple(d.sum() for d in _sigmoid_derivatives(np.full(logits.shape[1], s), logits,
                                                                       targets, weights)),
                low, high, shape=())
        temperature = 1.0 / inverse
        at_bound = np.isclose(temperature, self.min_temperature) | np.isclose(temperature, self.max_temperature)
        if np.any(at_bound):
            warnings.warn(
                f"The fitted temperature {np.round(temperature, 4).tolist()} is at the end of the range "
                f"[{self.min_temperature}, {self.max_temperature}]: "
                "at the low end the labels are separable by the logits (the NLL keeps falling as T -> 0), "
                "at the high end the logits say almost nothing about the labels. Check that the labels "
                "belong to these logits, or fit on more data.",
                stacklevel=2,
            )
        self.temperature = float(temperature) if np.ndim(temperature) == 0 else temperature
        self.nll_before = _nll(logits, targets, weights, self.activation)
        self.nll_after = _nll(self.transform(logits), targets, weights, self.activation)
        return self

    def transform(self, logits) -> np.ndarray:
        """Calibrated logits `logits / T` (float64), of the input's shape."""
        self._check_fitted()
        return as_logits(logits, self.activation) / self.temperature

    def predict_proba(self, logits) -> np.ndarray:
        """Calibrated probabilities `activation(logits / T)`, of the input's shape."""
        return probabilities(self.transform(logits), self.activation)

    def layer(self, **kwargs):
        """A `keras_logits.layers.Temperature` layer holding the fitted temperature."""
        from keras_logits.layers import Temperature

        self._check_fitted()
        value = self.temperature if np.ndim(self.temperature) == 0 else np.asarray(self.temperature).tolist()
        return Temperature(value, **kwargs)

    def _check_fitted(self):
        if self.temperature is None:
            raise ValueError("This TemperatureScaling is not fitted yet; call fit(logits, labels) first.")


@dataclasses.dataclass(frozen=True)
class ReliabilityReport:
    """Calibration of a set of predictions (see `reliability_report`).

    Per-bin arrays have one entry per confidence bin; bins without samples
    have count 0 and NaN confidence and accuracy, and do not count towards
    `mce`.
    """

    ece: float
    mce: float
    brier: float
    nll: float
    accuracy: float
    num_samples: int
    bin_edges: np.ndarray
    bin_count: np.ndarray
    bin_confidence: np.ndarray
    bin_accuracy: np.ndarray

    def as_dict(self) -> dict:
        """Plain Python values, ready for `json.dumps`: NaN bins become None."""
        def plain(array):
            return [None if np.isnan(v) else float(v) for v in np.asarray(array, dtype="float64")]

        return {
            "ece": self.ece, "mce": self.mce, "brier": self.brier, "nll": self.nll,
            "accuracy": self.accuracy, "num_samples": self.num_samples,
            "bins": {"edges": plain(self.bin_edges), "count": [int(c) for c in self.bin_count],
                     "confidence": plain(self.bin_confidence), "accuracy": plain(self.bin_accuracy)},
        }

    def table(self) -> str:
        """The per-bin table and the summary, as text."""
        lines = [f"{'bin':>13} {'count':>7} {'confidence':>10} {'accuracy':>8} {'gap':>7}"]
        for i, count in enumerate(self.bin_count):
            low, high = self.bin_edges[i], self.bin_edges[i + 1]
            if count:
                confidence, accuracy = self.bin_confidence[i], self.bin_accuracy[i]
                lines.append(f"[{low:.3f},{high:.3f}) {count:>7d} {confidence:>10.4f} {accuracy:>8.4f} "
                             f"{accuracy - confidence:>+7.4f}")
            else:
                lines.append(f"[{low:.3f},{high:.3f}) {0:>7d} {'-':>10} {'-':>8} {'-':>7}")
        lines.append(f"ECE {self.ece:.4f}  MCE {self.mce:.4f}  Brier {self.brier:.4f}  NLL {self.nll:.4f}  "
                     f"accuracy {self.accuracy:.4f}  ({self.num_samples} samples)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def reliability_report(logits_or_probabilities, labels, num_bins: int = 15, *, activation: str = "softmax",
                       from_logits: Optional[bool] = None, mask=None, ignore_class: Optional[int] = None,
                       sample_weight=None) -> ReliabilityReport:
    """ECE, maximum calibration error, Brier score, NLL, accuracy and the per-bin table.

    Softmax: the confidence is the top class probability and a prediction is
    correct when the top class is its label. Sigmoid: every label decision
    counts, with confidence `max(p, 1 - p)`, correct when `p >= 0.5` matches the
    target. Brier: softmax sums over classes per prediction; sigmoid averages
    over labels. These are the definitions of `keras_logits.metrics`. For a
    per-position head (`(batch, ..., C)`: pixels, tokens) every position is a
    prediction; `mask`, `ignore_class` and zero weights leave positions out.
    With `sample_weight`, every number is weighted except `bin_count` and
    `num_samples`, which count predictions.

    Args:
        logits_or_probabilities: `(num_samples, num_classes)` or
            `(batch, ..., num_classes)` logits or probabilities.
        labels: Class ids or one-hot labels (softmax), 0/1 targets (sigmoid);
            see `keras_logits.statistics.positions` for the shapes.
        num_bins: Number of equal-width confidence bins.
        activation: `"softmax"` or `"sigmoid"`.
        from_logits: Whether the values are logits. Default: probabilities if
            every value is in [0, 1] (and, for softmax, rows sum to 1 within
            1e-3), else logits. Pass it when you know.
        mask: Optional `(batch, ...)`, truthy where a position counts.
        ignore_class: A class id whose positions are left out (e.g. 255).
        sample_weight: Optional non-negative weights, `(batch,)` or
            `(batch, ...)`.

    Example:

    >>> import numpy as np
    >>> report = reliability_report(np.array([[0.9, 0.1], [0.8, 0.2]]), [0, 1], num_bins=10)
    >>> round(report.ece, 3), report.accuracy, report.bin_count.tolist()[8:]
    (0.45, 0.5, [1, 1])
    """
    if not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}.")
    kept = positions(logits_or_probabilities, labels, activation=activation, mask=mask,
                     sample_weight=sample_weight, ignore_class=ignore_class, soft_labels=True,
                     name="logits_or_probabilities")
    values, weights = kept.values, kept.weights
    if len(values) == 0:
        raise ValueError(_nothing_left("reliability_report", sample_weight))
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"logits_or_probabilities contain {int(np.sum(~np.isfinite(values)))} NaN/inf values; calibration "
            "is undefined for them. Drop those samples first (keras_logits.metrics.NonFiniteLogits counts them)."
        )
    if from_logits is None:
        from_logits = not _look_like_probabilities(values, activation)
    targets = _targets(kept.labels, values, activation)
    if from_logits:
        p = probabilities(values, activation)
        nll = _nll(values, targets, weights, activation)
    else:
        if np.any((values < 0) | (values > 1)):
            raise ValueError("from_logits=False, but some values are outside [0, 1]: these are not probabilities.")
        p = values
        nll = _nll_of_probabilities(p, targets, weights, activation)
    total = weights.sum()
    if activation == "softmax":
        confidence = p.max(axis=1)
        correct = p.argmax(axis=1) == targets.argmax(axis=1)
        brier = weights @ ((p - targets) ** 2).sum(axis=1) / total
        decision_weights = weights
    else:
        confidence = np.maximum(p, 1.0 - p).ravel()
        correct = ((p >= 0.5) == (targets >= 0.5)).ravel()
        brier = weights @ ((p - targets) ** 2).mean(axis=1) / total
        decision_weights = np.repeat(weights, p.shape[1])
    weight, confidence_sum, correct_sum = calibration_bins(confidence, correct, num_bins, decision_weights)
    count = np.bincount(np.clip((confidence * num_bins).astype("int64"), 0, num_bins - 1), minlength=num_bins)
    filled = weight > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_confidence = np.where(filled, confidence_sum / weight, np.nan)
        bin_accuracy = np.where(filled, correct_sum / weight, np.nan)
    gaps = np.abs(bin_accuracy - bin_confidence)[filled]
    return ReliabilityReport(
        ece=float(np.abs(confidence_sum - correct_sum).sum() / weight.sum()),
        mce=float(gaps.max()) if gaps.size else 0.0,
        brier=float(brier),
        nll=float(nll),
        accuracy=float(decision_weights @ correct / decision_weights.sum()),
        num_samples=int(len(values)),
        bin_edges=np.linspace(0.0, 1.0, num_bins + 1),
        bin_count=count.astype("int64"),
        bin_confidence=bin_confidence,
        bin_accuracy=bin_accuracy,
    )


def _nothing_left(caller: str, sample_weight) -> str:
    if sample_weight is not None:
        return (f"{caller}: sample_weight must be non-negative numbers with a positive sum over the positions "
                "that count; every weight is 0.")
    return (f"{caller} needs at least one sample; got an empty array (or every position is masked or has "
            "label == ignore_class).")


def _look_like_probabilities(values: np.ndarray, activation: str) -> bool:
    if not np.all(np.isfinite(values)) or np.any((values < 0) | (values > 1)):
        return False
    return activation == "sigmoid" or bool(np.allclose(values.sum(axis=1), 1.0, atol=1e-3))


def _targets(labels: np.ndarray, rows: np.ndarray, activation: str) -> np.ndarray:
    """`positions`' labels as `(P, C)` float64 targets: ids become one-hot rows, targets stay."""
    if labels.ndim == 2:
        return labels
    targets = np.zeros(rows.shape)  # not np.eye(num_classes)[ids]: 10^5 classes
    targets[np.arange(len(labels)), labels] = 1.0
    return targets


def _softmax_derivatives(inverse, logits, targets, weights):
    """First and second derivative of the weighted NLL in the inverse temperature."""
    p = np.exp(log_softmax(inverse * logits))
    expected = (p * logits).sum(axis=1)
    first = weights @ (expected - (targets * logits).sum(axis=1))
    second = weights @ ((p * logits**2).sum(axis=1) - expected**2)
    return first, second


def _sigmoid_derivatives(inverse, logits, targets, weights):
    """Per-class first and second derivatives of the weighted NLL in the inverse temperature(s)."""
    p = np.exp(log_sigmoid(inverse * logits))
    first = weights @ ((p - targets) * logits)
    second = weights @ (p * (1.0 - p) * logits**2)
    return first, second


def _newton(derivatives, low: float, high: float, shape: tuple, iterations: int = 200):
    """Root of the increasing derivative of a convex function in [low, high] (vectorised).

    Newton steps, falling back to bisection when a step leaves the bracket.
    A root outside the bracket ends on the nearer bound.
    """
    lower, upper = np.full(shape, low), np.full(shape, high)
    first_low, _ = derivatives(lower)
    first_high, _ = derivatives(upper)
    point = np.sqrt(lower * upper)
    for _ in range(iterations):
        first, second = derivatives(point)
        lower = np.where(first < 0, point, lower)
        upper = np.where(first >= 0, point, upper)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = point - first / second
        inside = np.isfinite(step) & (step > lower) & (step < upper)
        new_point = np.where(inside, step, 0.5 * (lower + upper))
        if np.all(np.abs(new_point - point) <= 1e-13 * point):
            point = new_point
            break
        point = new_point
    point = np.where(first_low >= 0, low, point)
    point = np.where(first_high <= 0, high, point)
    return point if shape else float(point)


def _nll(logits, targets, weights, activation) -> float:
    """Mean negative log-likelihood (sigmoid: per label, averaged) from logits."""
    if activation == "softmax":
        return float(-(weights @ (targets * log_softmax(logits)).sum(axis=1)) / weights.sum())
    per_sample = -(targets * log_sigmoid(logits) + (1 - targets) * log_sigmoid(-logits)).mean(axis=1)
    return float(weights @ per_sample / weights.sum())


def _nll_of_probabilities(p, targets, weights, activation) -> float:
    log_p = np.log(np.clip(p, _PROBABILITY_FLOOR, 1.0))
    if activation == "softmax":
        return float(-(weights @ (targets * log_p).sum(axis=1)) / weights.sum())
    log_q = np.log(np.clip(1.0 - p, _PROBABILITY_FLOOR, 1.0))
    return float(-(weights @ (targets * log_p + (1 - targets) * log_q).mean(axis=1)) / weights.sum())

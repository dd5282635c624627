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
>>> round(scaler.temperature_, 2)
3.08
>>> before = reliability_report(logits, labels, from_logits=True)
>>> after = reliability_report(scaler.transform(logits), labels, from_logits=True)
>>> bool(after.ece < before.ece / 2), after.accuracy == before.accuracy
(True, True)
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from typing import Optional

import numpy as np

from keras_logits._activations import check_activation
from keras_logits._temperature_fit import fit_temperature
from keras_logits.scores import as_logits, log_sigmoid, log_softmax, probabilities
from keras_logits.statistics import (_brier, _decisions, calibration_bins, expected_calibration_error,
                                     positions)

__all__ = ["TemperatureScaling", "NotFittedError", "ReliabilityReport", "reliability_report",
           "calibration_bins", "expected_calibration_error"]

_PROBABILITY_FLOOR = 1e-15  # log(p) of a probability 0 is clipped here when probabilities are given.
_FITTED = ("temperature_", "nll_before_", "nll_after_")


class NotFittedError(ValueError, AttributeError):
    """A fitted attribute (`temperature_`, ...) was read before `fit`, as scikit-learn's `NotFittedError`.

    A `ValueError` and an `AttributeError`, so `hasattr(scaler, "temperature_")`
    is False until the scaler is fitted.
    """


def _renamed(old: str, new: str) -> property:
    """The old name of a fitted attribute: reads `new` (None before fit) with a DeprecationWarning."""
    def read(self):
        warnings.warn(f"TemperatureScaling.{old} is deprecated: read {new} (fitted attributes end in '_', as in "
                      "scikit-learn).", DeprecationWarning, stacklevel=2)
        return self.__dict__.get(new)

    def write(self, value):
        raise AttributeError(f"TemperatureScaling.{old} is read-only; fit() sets {new} (assign {new} to set it "
                             "by hand).")

    return property(read, write, doc=f"Deprecated, read-only: `{new}`, or None before `fit`.")


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
        temperature_: The fitted temperature (a float; with `per_class`, a
            `(num_classes,)` array). Reading it before `fit` raises
            `NotFittedError`.
        nll_before_, nll_after_: Mean NLL of the fit data at `T = 1` and at
            the fitted `T`.
        temperature, nll_before, nll_after: Deprecated read-only names of the
            above (None before `fit`), with a `DeprecationWarning`.

    Example:

    >>> import numpy as np
    >>> logits = np.array([[6.0, 0.0], [0.0, 6.0], [6.0, 0.0], [0.0, 6.0]])
    >>> scaler = TemperatureScaling().fit(logits, [0, 1, 1, 1])  # one in four wrong
    >>> round(scaler.temperature_, 3), scaler.predict_proba(logits)[0].round(3).tolist()
    (5.461, [0.75, 0.25])
    """

    temperature = _renamed("temperature", "temperature_")
    nll_before = _renamed("nll_before", "nll_before_")
    nll_after = _renamed("nll_after", "nll_after_")

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

    def __getattr__(self, name: str):
        # Reached only when the attribute is not set: a fitted one before fit, as in scikit-learn.
        if name in _FITTED:
            raise NotFittedError(f"This TemperatureScaling is not fitted yet; call fit(logits, labels) first "
                                 f"(then read {name}).")
        raise AttributeError(f"'TemperatureScaling' object has no attribute {name!r}")

    def __repr__(self) -> str:
        return (f"TemperatureScaling(activation={self.activation!r}, per_class={self.per_class}, "
                f"temperature_={self.__dict__.get('temperature_')!r})")

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
        >>> round(TemperatureScaling().fit(pixels, labels, ignore_class=255).temperature_, 3)
        5.771
        """
        kept = positions(logits, labels, activation=self.activation, mask=mask, sample_weight=sample_weight,
                         ignore_class=ignore_class, soft_labels=True)
        logits = _checked_rows(kept, "TemperatureScaling.fit", sample_weight, "a temperature cannot be fitted")
        targets, weights = kept.targets(), kept.weights / kept.weights.sum()
        temperature = fit_temperature(logits, targets, weights, self.activation, per_class=self.per_class,
                                      min_temperature=self.min_temperature, max_temperature=self.max_temperature)
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
        self.temperature_ = float(temperature) if np.ndim(temperature) == 0 else temperature
        self.nll_before_ = _nll(logits, targets, weights, self.activation)
        self.nll_after_ = _nll(self.transform(logits), targets, weights, self.activation)
        return self

    def transform(self, logits) -> np.ndarray:
        """Calibrated logits `logits / T` (float64), of the input's shape."""
        temperature = self.temperature_  # refuses before fit, before reading the logits
        return as_logits(logits, self.activation) / temperature

    def predict_proba(self, logits) -> np.ndarray:
        """Calibrated probabilities `activation(logits / T)`, of the input's shape."""
        return probabilities(self.transform(logits), self.activation)

    def layer(self, **kwargs):
        """A `keras_logits.layers.Temperature` layer holding the fitted temperature."""
        from keras_logits.layers import Temperature

        temperature = self.temperature_
        value = temperature if np.ndim(temperature) == 0 else np.asarray(temperature).tolist()
        return Temperature(value, **kwargs)


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
        from_logits: True for logits, False for probabilities. None
            (deprecated) guesses, with a `DeprecationWarning`: probabilities
            if every value is in [0, 1] (and, for softmax, rows sum to 1
            within 1e-3), else logits; logits that happen to look like
            probabilities are then read wrongly.
        mask: Optional `(batch, ...)`, truthy where a position counts.
        ignore_class: A class id whose positions are left out (e.g. 255).
        sample_weight: Optional non-negative weights, `(batch,)` or
            `(batch, ...)`.

    Example:

    >>> import numpy as np
    >>> report = reliability_report(np.array([[0.9, 0.1], [0.8, 0.2]]), [0, 1], num_bins=10, from_logits=False)
    >>> round(report.ece, 3), report.accuracy, report.bin_count.tolist()[8:]
    (0.45, 0.5, [1, 1])
    """
    if not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}.")
    kept = positions(logits_or_probabilities, labels, activation=activation, mask=mask,
                     sample_weight=sample_weight, ignore_class=ignore_class, soft_labels=True,
                     name="logits_or_probabilities")
    values = _checked_rows(kept, "reliability_report", sample_weight, "calibration is undefined for them")
    if from_logits is None:
        from_logits = _guess_from_logits(values, activation)
    weights, targets = kept.weights, kept.targets()
    if from_logits:
        p = probabilities(values, activation)
        nll = _nll(values, targets, weights, activation)
    else:
        if np.any((values < 0) | (values > 1)):
            raise ValueError("from_logits=False, but some values are outside [0, 1]: these are not probabilities. "
                             "Pass from_logits=True if they are logits.")
        p = values
        nll = _nll_of_probabilities(p, targets, weights, activation)
    decisions = _decisions(p, kept.labels, activation, weights)
    bins = calibration_bins(decisions.confidence, decisions.correct, num_bins, decisions.weights)
    count, _, _ = calibration_bins(decisions.confidence, decisions.correct, num_bins)
    weight, confidence_sum, correct_sum = bins
    filled = weight > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_confidence = np.where(filled, confidence_sum / weight, np.nan)
        bin_accuracy = np.where(filled, correct_sum / weight, np.nan)
    gaps = np.abs(bin_accuracy - bin_confidence)[filled]
    return ReliabilityReport(
        ece=expected_calibration_error(decisions.confidence, decisions.correct, num_bins, decisions.weights),
        mce=float(gaps.max()) if gaps.size else 0.0,
        brier=float(weights @ _brier(p, kept.labels, activation) / weights.sum()),
        nll=float(nll),
        accuracy=float(decisions.weights @ decisions.correct / decisions.weights.sum()),
        num_samples=int(len(values)),
        bin_edges=np.linspace(0.0, 1.0, num_bins + 1),
        bin_count=count.astype("int64"),
        bin_confidence=bin_confidence,
        bin_accuracy=bin_accuracy,
    )


def _checked_rows(kept, caller: str, sample_weight, consequence: str) -> np.ndarray:
    """The kept rows, refused when none are left or some are NaN/inf."""
    values = kept.values
    if len(values) == 0:
        if sample_weight is not None:
            raise ValueError(f"{caller}: sample_weight must be non-negative numbers with a positive sum over the "
                             "positions that count; every weight is 0.")
        raise ValueError(f"{caller} needs at least one sample; got an empty array (or every position is masked or "
                         "has label == ignore_class).")
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"{caller}: the values contain {int(np.sum(~np.isfinite(values)))} NaN/inf values; {consequence}. "
            "Drop those samples first (keras_logits.metrics.NonFiniteLogits counts them)."
        )
    return values


def _guess_from_logits(values: np.ndarray, activation: str) -> bool:
    """The deprecated guess of `from_logits=None`: probabilities when they could be, else logits."""
    looks_like_probabilities = bool(np.all((values >= 0) & (values <= 1))) and (
        activation == "sigmoid" or bool(np.allclose(values.sum(axis=1), 1.0, atol=1e-3)))
    warnings.warn(
        f"reliability_report(from_logits=None) guessed that these values are "
        f"{'probabilities' if looks_like_probabilities else 'logits'}; the guess is deprecated and wrong for logits "
        "that happen to look like probabilities. Pass from_logits=True for logits or from_logits=False for "
        "probabilities.", DeprecationWarning, stacklevel=_caller_outside_the_package())
    return not looks_like_probabilities


def _caller_outside_the_package() -> int:
    """The `stacklevel` of the first caller outside keras_logits (plots call through here), whose code must change.

    Python shows a DeprecationWarning only when it is attributed to `__main__` code.
    """
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


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

"""The temperature that minimises the weighted negative log-likelihood: a bracketed Newton search.

The NLL of `activation(s * logits)` is convex in the inverse temperature `s`,
so the root of its derivative is found to machine precision by Newton steps
kept inside a bracket, not by gradient descent with a learning rate.
`keras_logits.calibration.TemperatureScaling.fit` validates the data and calls
`fit_temperature`.

Example:

>>> import numpy as np
>>> logits, targets = np.array([[6.0, 0.0], [0.0, 6.0]] * 2), np.eye(2)[[0, 1, 1, 1]]
>>> round(fit_temperature(logits, targets, np.full(4, 0.25), "softmax", per_class=False,
...                       min_temperature=0.01, max_temperature=100.0), 3)
5.461
"""

from __future__ import annotations

from typing import Union

import numpy as np

from keras_logits.scores import log_sigmoid, log_softmax


def fit_temperature(logits: np.ndarray, targets: np.ndarray, weights: np.ndarray, activation: str, *,
                    per_class: bool, min_temperature: float, max_temperature: float) -> Union[float, np.ndarray]:
    """The temperature in `[min_temperature, max_temperature]` minimising the weighted NLL; an array with `per_class`.

    `logits` and `targets` are `(P, C)` float64, `weights` `(P,)` summing to 1.
    A minimum outside the range ends on the nearer bound.
    """
    low, high = 1.0 / max_temperature, 1.0 / min_temperature
    if activation == "softmax":
        inverse = _newton(lambda s: _softmax_derivatives(s, logits, targets, weights), low, high, shape=())
    elif per_class:
        inverse = _newton(lambda s: _sigmoid_derivatives(s, logits, targets, weights),
                          low, high, shape=(logits.shape[1],))
    else:
        inverse = _newton(
            lambda s: tuple(d.sum() for d in _sigmoid_derivatives(np.full(logits.shape[1], s), logits,
                                                                   targets, weights)),
            low, high, shape=())
    return 1.0 / inverse


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

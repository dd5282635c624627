"""Per-sample scores of a classifier's logits: confidence, out-of-distribution and error detection.

Every function takes logits of shape `(num_samples, num_classes)` (NumPy, or
any array NumPy can read: a TensorFlow, JAX or CPU torch tensor) and returns a
float64 NumPy vector with one score per sample. Per-position heads give
`(batch, ..., num_classes)` logits (pixels, tokens): the classes are the last
axis, every other axis is a position, and the scores come back as
`(batch, ...)`, one per position; the softmax is over the class axis only.
Scores are computed in float64 from the logits: a float32 softmax saturates at 1.0 for logits ~17 apart, float64 at ~37;
`entropy`, `energy` and `margin` keep ranking samples far beyond that.

Which direction means "more likely out-of-distribution (or misclassified)":

| score             | OOD when | reference                                   |
|-------------------|----------|---------------------------------------------|
| `max_probability` | lower    | Hendrycks & Gimpel 2017 (MSP baseline)      |
| `max_logit`       | lower    | Hendrycks et al. 2022 (MaxLogit)            |
| `margin`          | lower    | top-1 minus top-2 logit                     |
| `energy`          | higher   | Liu et al. 2020, `-T * logsumexp(logits/T)` |
| `entropy`         | higher   | predictive entropy (nats)                   |

`HIGHER_MEANS_OOD` holds the same table for code. For sigmoid (binary and
multi-label) heads, pass `activation="sigmoid"`: probabilities are per label,
`max_probability` is the most confident label decision `max(p, 1 - p)`,
`energy` is the joint energy `-T * sum(softplus(logits / T))` (Wang et al. 2021)
and `entropy` sums the per-label binary entropies.

Example:

>>> import numpy as np
>>> from keras_logits import scores
>>> logits = np.array([[8.0, 0.0, 0.0], [0.5, 0.4, 0.3]])
>>> scores.max_probability(logits).round(3).tolist()
[0.999, 0.367]
>>> scores.energy(logits).round(3).tolist()
[-8.001, -1.502]
>>> [name for name, ood_if_higher in scores.HIGHER_MEANS_OOD.items() if ood_if_higher]
['energy', 'entropy']
>>> scores.entropy(np.zeros((2, 4, 4, 3))).shape     # 2 images of 4x4 pixels, 3 classes
(2, 4, 4)
"""

from __future__ import annotations

import numpy as np

from keras_logits._activations import check_activation

HIGHER_MEANS_OOD = {
    "max_probability": False,
    "max_logit": False,
    "margin": False,
    "energy": True,
    "entropy": True,
}


def as_logits(values, activation: str = "softmax", *, name: str = "logits") -> np.ndarray:
    """`values` as float64 `(num_samples, num_classes)` or `(batch, ..., num_classes)`; raises ValueError otherwise.

    The classes are the last axis. A 1-D vector is read as one binary logit per
    sample for `"sigmoid"`; for `"softmax"` it is ambiguous and refused.
    """
    return _classes_last(values, activation, name).astype("float64", copy=False)


def _classes_last(values, activation: str, name: str) -> np.ndarray:
    """`values` as a numeric array with the classes last, in its own dtype (large probes are filtered first)."""
    check_activation(activation)
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        array = array.astype("float64")  # strings and objects fail here, with NumPy's own message
    if array.ndim == 1 and activation == "sigmoid":
        array = array[:, None]
    if array.ndim < 2:
        raise ValueError(
            f"{name} must be (num_samples, num_classes) or (batch, ..., num_classes), classes last; got shape "
            f"{array.shape}." + (" Pass a batch of rows, e.g. logits[None] for one sample."
                                 if activation == "softmax" else "")
        )
    if array.shape[-1] == 0:
        raise ValueError(f"{name} have zero classes (shape {array.shape}); a classifier needs at least one.")
    return array


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-softmax over the last (class) axis in float64, exact for any finite logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def log_sigmoid(logits: np.ndarray) -> np.ndarray:
    """`log(sigmoid(x)) = -softplus(-x)`, exact for large |x|."""
    return -np.logaddexp(0.0, -logits)


def probabilities(logits, activation: str = "softmax") -> np.ndarray:
    """Softmax (over the class axis) or sigmoid (elements) of `logits`, in float64; same shape."""
    logits = as_logits(logits, activation)
    if activation == "softmax":
        return np.exp(log_softmax(logits))
    return np.exp(log_sigmoid(logits))


def max_probability(logits, activation: str = "softmax") -> np.ndarray:
    """Confidence of the predicted class (sigmoid: of the most confident label decision). Lower: OOD."""
    p = probabilities(logits, activation)
    if activation == "sigmoid":
        p = np.maximum(p, 1.0 - p)
    return p.max(axis=-1)


def max_logit(logits) -> np.ndarray:
    """The largest logit. Lower: OOD."""
    return as_logits(logits, "sigmoid").max(axis=-1)


def margin(logits, activation: str = "softmax") -> np.ndarray:
    """Top-1 minus top-2 logit (a single binary logit: its absolute value). Lower: OOD or likely wrong."""
    logits = as_logits(logits, activation)
    if logits.shape[-1] == 1:
        return np.abs(logits[..., 0])
    top_two = np.partition(logits, -2, axis=-1)[..., -2:]
    return top_two[..., 1] - top_two[..., 0]


def energy(logits, temperature: float = 1.0, activation: str = "softmax") -> np.ndarray:
    """`-T * logsumexp(logits / T)` (sigmoid: `-T * sum(softplus(logits / T))`). Higher: OOD."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}.")
    scaled = as_logits(logits, activation) / temperature
    if activation == "softmax":
        top = scaled.max(axis=-1)
        return -temperature * (top + np.log(np.exp(scaled - top[..., None]).sum(axis=-1)))
    return -temperature * np.logaddexp(0.0, scaled).sum(axis=-1)


def entropy(logits, activation: str = "softmax") -> np.ndarray:
    """Predictive entropy in nats (sigmoid: summed over labels). Higher: OOD or likely wrong."""
    logits = as_logits(logits, activation)
    if activation == "softmax":
        return _softmax_entropy(log_softmax(logits))
    return _binary_entropies(log_sigmoid(logits), log_sigmoid(-logits)).sum(axis=-1)


def _softmax_entropy(log_p: np.ndarray) -> np.ndarray:
    """`-sum(p * log p)` over the class axis, from log-probabilities (callers that have them skip a softmax)."""
    return -(np.exp(log_p) * log_p).sum(axis=-1)


def _binary_entropies(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """The binary entropy of every sigmoid unit from `log p` and `log(1 - p)` (`log_sigmoid(x)`, `log_sigmoid(-x)`)."""
    return -(np.exp(log_p) * log_p + np.exp(log_q) * log_q)


def ood_scores(logits, activation: str = "softmax", *, temperature: float = 1.0) -> dict:
    """All five scores as `{name: (num_samples,) or (batch, ...) array}`; see `HIGHER_MEANS_OOD` for directions."""
    logits = as_logits(logits, activation)
    return {
        "max_probability": max_probability(logits, activation),
        "max_logit": max_logit(logits),
        "margin": margin(logits, activation),
        "energy": energy(logits, temperature, activation),
        "entropy": entropy(logits, activation),
    }

"""Class ids and top-k classes from probabilities, in NumPy, for any head shape.

A head's output is `(batch, ..., classes)` with the class axis where the
activation normalised (usually the last): every other axis is a position
(a pixel, a token). The rule is defined here once: the argmax over the class
axis for softmax heads, a 0/1 decision per class at `SIGMOID_THRESHOLD` for
sigmoid heads. The serving graph applies it as a TensorFlow op (what ONNX
needs); `class_ids` is the NumPy one that the command line, the demo and
export verification call.
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("softmax", "sigmoid")
SIGMOID_THRESHOLD = 0.5
# The rule in words, as the export manifest records it.
RULES = {"softmax": "argmax", "sigmoid": f"probabilities >= {SIGMOID_THRESHOLD}"}


def check_activation(activation: str) -> str:
    """Returns `activation` if class ids are defined for it, else raises naming the ones that are.

    Example:

    >>> check_activation("sigmoid")
    'sigmoid'
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
    return activation


def class_ids(probabilities, activation: str, axis: int = -1) -> np.ndarray:
    """The predicted classes: argmax over `axis` (softmax), or 0/1 at 0.5 per class (sigmoid).

    Softmax heads lose the class axis: `(batch, H, W, classes)` gives
    `(batch, H, W)`. Sigmoid heads (binary or multi-label) keep it, one 0/1
    decision per class, like the exported `class_id`.

    Example:

    >>> import numpy as np
    >>> p = np.array([[[0.2, 0.8], [0.9, 0.1]]])          # one sample, two positions
    >>> class_ids(p, "softmax")
    array([[1, 0]])
    >>> class_ids(np.array([[0.7, 0.4, 0.5]]), "sigmoid")
    array([[1, 0, 1]])
    """
    probabilities = np.asarray(probabilities)
    if check_activation(activation) == "softmax":
        return np.argmax(probabilities, axis=axis).astype("int64")
    return (probabilities >= SIGMOID_THRESHOLD).astype("int64")


def undecided(probabilities, activation: str, axis: int = -1, *, tolerance: float) -> np.ndarray:
    """Where a class id could go either way: within `tolerance` of a tie, shaped like `class_ids`.

    Softmax: the top two probabilities differ by at most `tolerance`.
    Sigmoid: the probability is within `tolerance` of `SIGMOID_THRESHOLD`. Two
    computations of the same probabilities that round differently may disagree
    there, and only there.

    Example:

    >>> import numpy as np
    >>> undecided(np.array([[0.5, 0.5, 0.0], [0.9, 0.1, 0.0]]), "softmax", tolerance=1e-5)
    array([ True, False])
    >>> undecided(np.array([[0.500001, 0.7]]), "sigmoid", tolerance=1e-5)
    array([[ True, False]])
    """
    probabilities = np.asarray(probabilities, dtype="float64")
    if check_activation(activation) == "sigmoid":
        return np.abs(probabilities - SIGMOID_THRESHOLD) <= tolerance
    if probabilities.shape[axis] < 2:
        return np.zeros(np.delete(probabilities.shape, axis % probabilities.ndim), dtype=bool)
    _, best = top_k(probabilities, 2, axis)
    return best[..., 0] - best[..., 1] <= tolerance


def top_k(probabilities, k: int, axis: int = -1) -> tuple:
    """`(ids, probabilities)` of the `k` most probable classes at every position, best first.

    The class axis moves last and keeps `min(k, classes)` entries; ties keep
    the lower class id first.

    Example:

    >>> import numpy as np
    >>> ids, values = top_k(np.array([[0.1, 0.6, 0.3]]), 2)
    >>> ids, values
    (array([[1, 2]]), array([[0.6, 0.3]]))
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    probabilities = np.moveaxis(np.asarray(probabilities), axis, -1)
    order = np.argsort(-probabilities, axis=-1, kind="stable")[..., :k]
    return order.astype("int64"), np.take_along_axis(probabilities, order, axis=-1)


def positions(output_shape, axis: int = -1) -> tuple:
    """The position axes of a head output shape `(batch, ..., classes)`: all but batch and class axis.

    Example:

    >>> positions((None, 64, 64, 21))
    (64, 64)
    >>> positions((None, 10))
    ()
    """
    shape = list(output_shape)
    del shape[axis % len(shape)]
    return tuple(shape[1:])

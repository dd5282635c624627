"""Class ids and top-k classes from probabilities, in NumPy, for any head shape.

A head's output is `(batch, ..., classes)` with the class axis where the
activation normalised (usually the last): every other axis is a position
(a pixel, a token). The serving graph computes the same ids in TensorFlow;
these are the host-side twins that the command line, the demo and export
verification use.
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("softmax", "sigmoid")


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
    if activation == "softmax":
        return np.argmax(probabilities, axis=axis).astype("int64")
    if activation == "sigmoid":
        return (probabilities >= 0.5).astype("int64")
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")


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

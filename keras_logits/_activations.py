"""The classification activations keras-logits supports, and the one check of them.

A leaf module (it imports nothing from the package), so that `head.py` can import the
package's own layers, which check their `activation` argument here, without a cycle.
"""

from __future__ import annotations

SUPPORTED_ACTIVATIONS = ("softmax", "sigmoid")


def check_activation(activation) -> None:
    """Raises ValueError unless `activation` is 'softmax' or 'sigmoid'.

    Example:

    >>> check_activation("softmax")
    >>> check_activation("relu")
    Traceback (most recent call last):
    ...
    ValueError: activation='relu' is not supported; pass 'softmax' (one class per sample) or 'sigmoid' (binary / multi-label).
    """
    if activation not in SUPPORTED_ACTIVATIONS:
        raise ValueError(
            f"activation={activation!r} is not supported; pass 'softmax' (one class per "
            "sample) or 'sigmoid' (binary / multi-label)."
        )

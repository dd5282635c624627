"""Predictions as plain-text tables, for `keras-logits predict` and the demo."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from keras_logits._class_ids import top_k as best


def prediction_table(logits, probabilities, *, top_k: int = 1, axis: int = -1,
                     class_names: Optional[Sequence[str]] = None, labels: Optional[np.ndarray] = None) -> str:
    """One line per sample and rank: its `top_k` classes by probability, with logit, probability, log(p) and margin.

    For heads with one prediction per sample, `(batch, classes)`. The margin
    of a class is its logit minus the largest logit of the other classes:
    positive for the predicted class of a softmax head (the top-1 margin),
    negative for the others. `labels`, when given, adds the true class of
    each sample after its index.

    Example:

    >>> import numpy as np
    >>> logits = np.array([[2.0, 0.0, -1.0]])
    >>> p = np.exp(logits) / np.exp(logits).sum()
    >>> print(prediction_table(logits, p, top_k=2, class_names=["cat", "dog", "owl"]))
    sample rank        class     logit probability     log(p)    margin
         0    1          cat    2.0000    0.843795    -0.1698    2.0000
         0    2          dog    0.0000    0.114195    -2.1698   -2.0000
    """
    logits = np.moveaxis(np.asarray(logits), axis, -1)
    ids, values = best(probabilities, top_k, axis)
    label_column = f"{'label':>12} " if labels is not None else ""
    lines = [f"{'sample':>6} {label_column}{'rank':>4} {'class':>12} {'logit':>9} {'probability':>11} "
             f"{'log(p)':>10} {'margin':>9}"]
    with np.errstate(divide="ignore"):  # A probability of 0 has log(p) = -inf, printed as such.
        log_values = np.log(values)
    for i in range(len(logits)):
        label = f"{_label(int(labels[i]), class_names):>12} " if labels is not None else ""
        for rank, (index, value, log_value) in enumerate(zip(ids[i], values[i], log_values[i]), start=1):
            lines.append(f"{i:>6} {label}{rank:>4} {_label(index, class_names):>12} {logits[i, index]:>9.4f} "
                         f"{value:>11.6f} {log_value:>10.4f} {_margin(logits[i], index):>9}")
    return "\n".join(lines)


def position_table(ids: np.ndarray, *, num_classes: int, activation: str, axis: int = -1, top_k: int = 1,
                   class_names: Optional[Sequence[str]] = None) -> str:
    """One line per sample of a per-position head: its `top_k` most frequent predicted classes.

    `ids` are the class ids of `_class_ids.class_ids`: one per position for
    softmax heads; a 0/1 decision per class and position for sigmoid heads,
    counted as the positions each class is on at.

    Example:

    >>> import numpy as np
    >>> print(position_table(np.array([[[0, 2], [2, 2]]]), num_classes=3, activation="softmax", top_k=2))
    sample positions  most frequent classes (positions)
         0         4  2 (3, 75%), 0 (1, 25%)
    """
    lines = [f"{'sample':>6} {'positions':>9}  most frequent classes (positions)"]
    for i in range(len(ids)):
        if activation == "softmax":
            counts, count = np.bincount(ids[i].ravel(), minlength=num_classes), ids[i].size
        else:
            on = np.moveaxis(ids[i], axis if axis < 0 else axis - 1, -1)
            counts, count = on.reshape(-1, num_classes).sum(0), on.size // num_classes
        frequent = [j for j in np.argsort(-counts, kind="stable")[:top_k] if counts[j]]
        summary = ", ".join(f"{_label(j, class_names)} ({counts[j]}, {counts[j] / count:.0%})" for j in frequent)
        lines.append(f"{i:>6} {count:>9}  {summary or '-'}")
    return "\n".join(lines)


def _label(index: int, class_names: Optional[Sequence[str]]) -> str:
    return class_names[index] if class_names and index < len(class_names) else str(index)


def _margin(logits: np.ndarray, index: int) -> str:
    others = np.delete(logits, index)
    return f"{logits[index] - others.max():.4f}" if others.size else "-"  # One class: no other to beat.

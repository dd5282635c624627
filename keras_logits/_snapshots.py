"""Per-epoch `.npz` snapshots of a probe's logits: what is stored, how big it gets, which ones are kept.

A snapshot holds the probe's `logits` (probabilities are derived from them:
`softmax`/`sigmoid` of the stored logits), the `labels`, the `epoch` and, for
per-position heads, the `mask` and the flat indices of the stored
`positions` when only a sample of them is kept.

Cost per epoch, uncompressed: `P * C * itemsize` bytes of logits, where `P` is
the number of stored positions (samples x positions per sample, e.g.
64 x 512 x 512 for a segmentation probe, or fewer with `max_bytes`), `C` the
classes and `itemsize` 4 for float32, 2 for float16; plus the labels (`P * 8`
for int64 sparse labels) and the mask (`P` bytes). Compression
(`np.savez_compressed`) saves little on float logits, much on labels and masks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Union

import numpy as np

from keras_logits._files import atomic_write

_NAME = re.compile(r"^epoch_(\d+)\.npz$")


def snapshot_name(epoch: int) -> str:
    """`epoch_0003.npz`."""
    return f"epoch_{epoch:04d}.npz"


def snapshot_epochs(directory: Union[str, os.PathLike]) -> list:
    """The epochs that have a snapshot in `directory`, sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for m in (_NAME.match(p.name) for p in directory.iterdir()) if m)


def position_sample(total: int, bytes_per_position: int, max_bytes: Optional[int], *, seed: int = 0):
    """Sorted flat indices of the positions to store under a byte budget; `None` stores them all.

    The same positions every epoch (a fixed seed), so snapshots compare across epochs.

    Example:

    >>> position_sample(1000, 40, 4000).size, position_sample(10, 40, None)
    (100, None)
    """
    if max_bytes is None or total * bytes_per_position <= max_bytes:
        return None
    keep = max(1, int(max_bytes) // max(1, int(bytes_per_position)))
    return np.sort(np.random.default_rng(seed).choice(total, size=min(keep, total), replace=False))


def write_snapshot(path: Union[str, os.PathLike], arrays: dict, *, compress: bool = False) -> Path:
    """Writes `arrays` atomically as `.npz` (compressed with `compress=True`)."""
    save = np.savez_compressed if compress else np.savez
    return atomic_write(path, lambda f: save(f, **arrays), durable=False)  # one per epoch: the rename keeps it whole


def kept_epochs(epochs: list, *, keep_last: Optional[int] = None, keep_every: Optional[int] = None) -> set:
    """Which snapshot epochs a keep policy keeps: the last `keep_last` and every `keep_every`-th epoch.

    Both `None` keeps everything.

    Example:

    >>> sorted(kept_epochs(list(range(10)), keep_last=2, keep_every=4))
    [0, 4, 8, 9]
    """
    if keep_last is None and keep_every is None:
        return set(epochs)
    ordered = sorted(epochs)
    kept = set(ordered[-keep_last:]) if keep_last else set()
    if keep_every:
        kept |= {epoch for epoch in ordered if epoch % keep_every == 0}
    return kept


def prune(directory: Union[str, os.PathLike], *, keep_last: Optional[int] = None,
          keep_every: Optional[int] = None, from_epoch: Optional[int] = None) -> list:
    """Deletes the snapshots a keep policy drops (and those of epochs >= `from_epoch`); returns their epochs."""
    directory = Path(directory)
    epochs = snapshot_epochs(directory)
    kept = kept_epochs(epochs, keep_last=keep_last, keep_every=keep_every)
    dropped = [e for e in epochs if e not in kept or (from_epoch is not None and e >= from_epoch)]
    for epoch in dropped:
        (directory / snapshot_name(epoch)).unlink(missing_ok=True)
    return dropped


class SnapshotWriter:
    """Writes one run's per-epoch snapshots into `directory` and applies its keep policy after each.

    Example:

    >>> import tempfile, numpy as np
    >>> writer = SnapshotWriter(tempfile.mkdtemp(), activation="softmax", keep_last=1)
    >>> for epoch in range(3):
    ...     writer.write(epoch, np.zeros((4, 3), "float32"), labels=np.array([0, 1, 2, 0]))
    >>> snapshot_epochs(writer.directory)
    [2]
    """

    def __init__(self, directory: Union[str, os.PathLike], *, activation: str, dtype: str = "float32",
                 compress: bool = False, max_bytes: Optional[int] = None, keep_last: Optional[int] = None,
                 keep_every: Optional[int] = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._activation = activation
        self._dtype = dtype
        self._compress = compress
        self._max_bytes = max_bytes
        self._keep = {"keep_last": keep_last, "keep_every": keep_every}

    def write(self, epoch: int, logits: np.ndarray, labels: Optional[np.ndarray] = None, mask=None) -> None:
        """Writes `epoch_NNNN.npz` (logits, labels, mask; a fixed sample of positions under `max_bytes`)."""
        classes = logits.shape[-1]
        flat = logits.reshape(-1, classes)
        chosen = position_sample(len(flat), classes * np.dtype(self._dtype).itemsize, self._max_bytes)
        arrays = {"epoch": np.asarray(epoch), "activation": np.asarray(self._activation)}
        if chosen is None:
            arrays["logits"] = logits.astype(self._dtype)
        else:
            arrays["logits"] = flat[chosen].astype(self._dtype)
            arrays["positions"] = chosen
            if labels is not None:
                labels = _per_position(labels, flat.shape[0], classes)[chosen]
            if mask is not None:
                mask = np.asarray(mask).reshape(-1)[chosen]
        if labels is not None:
            arrays["labels"] = labels
        if mask is not None:
            arrays["mask"] = np.asarray(mask, dtype=bool)
        write_snapshot(self.directory / snapshot_name(epoch), arrays, compress=self._compress)
        prune(self.directory, **self._keep)


def _per_position(labels, positions: int, classes: int) -> np.ndarray:
    """Labels as one row per position: `(P,)` class ids or `(P, classes)`, to store beside sampled logits."""
    labels = np.asarray(labels)
    if labels.size == positions * classes and classes > 1:
        return labels.reshape(positions, classes)
    return labels.reshape(positions)

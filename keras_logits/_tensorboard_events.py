"""TensorBoard event files written with the `tensorboard` package alone (no TensorFlow needed).

Scalars are written as `simple_value` and histograms as `HistogramProto`, the
forms TensorBoard's own readers (`event_accumulator`, the web UI) load, so logs
come out the same on the TensorFlow, JAX and torch backends.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import socket
import time
from pathlib import Path
from typing import Optional

import numpy as np


_UIDS = itertools.count()  # two writers started in one process within a second never share a file name


def require_tensorboard(what: str = "LogitsLogger(log_dir=...)") -> None:
    """Raises a one-line `ImportError` naming the install when the `tensorboard` package is missing.

    Example:

    >>> require_tensorboard()  # installed here: nothing to say
    """
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError(f"{what} writes TensorBoard events, which needs the tensorboard package: "
                          "pip install tensorboard (or keras-logits[tensorboard]); csv_path= and snapshots "
                          "work without it.")


def histogram_sample(logits: np.ndarray, probabilities: np.ndarray, *, mask=None, labels=None,
                     ignore_class: Optional[int] = None, max_values: int = 1_000_000, seed: int = 0) -> tuple:
    """Logits and probabilities of the positions that count, `(positions, classes)`, at most `max_values` values.

    A fixed sample of positions (the same every epoch), so a 1.4 GB segmentation probe costs a bounded
    histogram; masked and `ignore_class` positions are left out, as in the summaries.

    Example:

    >>> logits = np.arange(12.0).reshape(2, 3, 2)
    >>> histogram_sample(logits, logits, mask=np.array([[1, 0, 1], [1, 1, 1]]))[0].shape
    (5, 2)
    """
    classes = logits.shape[-1] if logits.ndim > 1 else 1
    logits, probabilities = logits.reshape(-1, classes), probabilities.reshape(-1, classes)
    keep = np.ones(len(logits), dtype=bool)
    if mask is not None:
        keep &= np.asarray(mask).reshape(-1).astype(bool)
    if ignore_class is not None and labels is not None and labels.size == len(logits):
        keep &= labels.reshape(-1) != ignore_class
    rows = np.flatnonzero(keep)
    limit = max(1, max_values // classes)
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
    elif len(rows) == len(logits):
        return logits, probabilities
    return logits[rows], probabilities[rows]


class EventWriter:
    """Appends scalar and histogram events for one step to event files in `log_dir`.

    Example:

    >>> import tempfile
    >>> writer = EventWriter(tempfile.mkdtemp())
    >>> writer.write(step=0, scalars={"logits/mean": 0.5}, histograms={"probe/logits": [0.1, 2.0]})
    >>> writer.close()
    """

    def __init__(self, log_dir: str, *, bins: int = 30):
        # TensorBoard's own EventFileWriter reaches files through `tensorboard.compat.tf`, which imports
        # TensorFlow wherever it is installed (seconds, and memory, on JAX or torch): a plain file and
        # TensorBoard's record framing write the same file without it.
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_UIDS)}"
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self._writer = RecordWriter(open(Path(log_dir) / name, "ab"))
        self._writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        self._writer.flush()
        self._bins = bins

    def write(self, *, step: int, scalars: dict, histograms: dict) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        values = [summary_pb2.Summary.Value(tag=tag, simple_value=float(value)) for tag, value in scalars.items()]
        values += [summary_pb2.Summary.Value(tag=tag, histo=self._histogram(data)) for tag, data in histograms.items()]
        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values))
        self._writer.write(event.SerializeToString())
        self._writer.flush()

    def _histogram(self, data):
        from tensorboard.compat.proto import summary_pb2

        values = np.asarray(data, dtype="float64").ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            return summary_pb2.HistogramProto()
        low, high = float(values.min()), float(values.max())
        counts, edges = np.histogram(values, bins=self._bins, range=(low, high if high > low else low + 1e-6))
        return summary_pb2.HistogramProto(
            min=low, max=high, num=float(values.size), sum=float(values.sum()),
            sum_squares=float(np.square(values).sum()),
            bucket_limit=[float(edge) for edge in edges[1:]], bucket=[float(count) for count in counts],
        )

    def close(self) -> None:
        if not self._writer.closed:
            self._writer.close()

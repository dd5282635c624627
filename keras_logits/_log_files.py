"""The files of one `LogitsLogger` run: TensorBoard events, CSV rows and npz snapshots, on one writer thread.

`LogitsLogger` decides what to log each epoch; this module decides where it
goes (run names shared by the three, `keras_logits`, `keras_logits_2`, ...)
and writes it off the training thread, in order, each file atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from keras_logits import _snapshots as snapshot_files
from keras_logits._csv_log import CsvLog
from keras_logits._expose import LOGITS, PROBABILITIES
from keras_logits._files import remove_stale_temporaries
from keras_logits._probe_runner import MASK
from keras_logits._runs import RUN_DIRECTORY, has_events, run_directory
from keras_logits._tensorboard_events import EventWriter, histogram_sample
from keras_logits._writer_thread import WriterThread


class LogFiles:
    """Where a logger run writes, and the writes of each epoch queued on one background `WriterThread`.

    Built at train begin: checks every directory is writable and removes the
    temporaries a killed writer left. `start(first_epoch)` names the run;
    `write` queues one epoch; `close` writes what is queued and closes files.
    """

    def __init__(self, *, log_dir: Optional[Path], csv_path: Optional[Path], snapshot_parent: Optional[Path],
                 shared_snapshots: bool, activation: str, labels, ignore_class: Optional[int],
                 histograms: bool, max_histogram_values: int, snapshot_options: dict):
        self.log_dir, self.csv_path, self.snapshot_parent = log_dir, csv_path, snapshot_parent
        for directory in (log_dir, snapshot_parent, csv_path and csv_path.parent):
            if directory is not None:
                _check_writable(Path(directory))
                remove_stale_temporaries(directory)  # left by a process killed mid-write
        self._shared_snapshots = shared_snapshots
        self._activation, self._labels, self._ignore_class = activation, labels, ignore_class
        self._histograms, self._max_histogram_values = histograms, max_histogram_values
        self._snapshot_options = snapshot_options
        self._csv = None if csv_path is None else CsvLog(csv_path)
        self._events = self._snapshots = None
        self.run_dir = self.snapshot_dir = None
        self.run = RUN_DIRECTORY
        self._thread = WriterThread()

    def start(self, first_epoch: int) -> None:
        """Picks this fit's run (new from epoch 0, the latest when resuming) and its snapshot directory."""
        if self.log_dir is not None:
            self.run_dir = run_directory(self.log_dir / RUN_DIRECTORY, first_epoch, has_events)
            self._events = EventWriter(str(self.run_dir))
        run = self.run_dir.name if self.run_dir is not None else None
        self.run = self._csv.start(first_epoch, run) if self._csv is not None else (run or RUN_DIRECTORY)
        if self.snapshot_parent is None:
            return
        if not self._shared_snapshots and self.run_dir is not None:
            self.snapshot_dir = self.run_dir / "snapshots"
        else:  # a directory shared by runs: a new run gets `<dir>_2`, ... rather than deleting the last's
            base = self.snapshot_parent if self._shared_snapshots else \
                self.snapshot_parent / f"{self.csv_path.stem}_snapshots"
            self.snapshot_dir = run_directory(base, first_epoch, lambda d: bool(snapshot_files.snapshot_epochs(d)))
        self._snapshots = snapshot_files.SnapshotWriter(self.snapshot_dir, activation=self._activation,
                                                        **self._snapshot_options)
        snapshot_files.prune(self.snapshot_dir, from_epoch=first_epoch)

    def write(self, epoch: int, values: dict, outputs: Optional[dict], *, scalars: dict) -> None:
        """Queues the epoch's TensorBoard event (`scalars`), CSV row (`values`) and snapshot (`outputs`), in order."""
        writes, events, snapshots, labels = [], self._events, self._snapshots, self._labels
        if events is not None:
            writes.append(lambda: events.write(step=epoch, scalars=scalars, histograms=self.histograms(outputs)))
        if self._csv is not None:
            writes.append(self._csv.add(epoch, values))
        if snapshots is not None and outputs is not None:
            writes.append(lambda: snapshots.write(epoch, outputs[LOGITS], labels, outputs.get(MASK)))
        self._thread.wait()  # the previous epoch's, normally done long ago: one epoch in flight at most
        for write in writes:
            self._thread.submit(write)

    def histograms(self, outputs: Optional[dict]) -> dict:
        """`{"probe_logits", "probe_probabilities"}` of the positions that count, a bounded fixed sample."""
        if not self._histograms or outputs is None:
            return {}
        logits, probabilities = histogram_sample(outputs[LOGITS], outputs[PROBABILITIES], mask=outputs.get(MASK),
                                                 labels=self._labels, ignore_class=self._ignore_class,
                                                 max_values=self._max_histogram_values)
        return {"probe_" + LOGITS: logits, "probe_" + PROBABILITIES: probabilities}

    def wait_if_pending(self) -> None:
        """Blocks until every queued write is done (at once when none is)."""
        if self._thread.pending:
            self._thread.wait()

    def close(self) -> None:
        """Writes what is queued, then closes the event file; raises the error of a write that failed."""
        try:
            self._thread.close()
        finally:
            if self._events is not None:
                self._events.close()


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe_file = directory / f".keras-logits-write-check-{os.getpid()}"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as error:
        raise PermissionError(
            f"LogitsLogger cannot write to '{directory}' ({error.strerror or error}). Pass a directory "
            "you can write to."
        ) from None

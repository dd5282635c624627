"""`LogitsLogger`'s CSV: one row per epoch under a `run` column, earlier runs kept, rewritten atomically."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Callable, Optional, Union

from keras_logits._files import atomic_write
from keras_logits._runs import RUN_DIRECTORY, next_run_name

RUN_COLUMN = "run"


class CsvLog:
    """The rows of a CSV log: read at train begin, one added per epoch; `add` returns the write to run.

    A resumed run (`first_epoch > 0`) replaces its own rows of the epochs it
    redoes; every other run's rows stay. A CSV from before the `run` column is
    read as run `keras_logits`.

    Example:

    >>> import tempfile, os
    >>> log = CsvLog(os.path.join(tempfile.mkdtemp(), "log.csv"))
    >>> log.start(0)
    'keras_logits'
    >>> log.add(0, {"loss": 0.5})()
    >>> open(log.path).read().splitlines()
    ['epoch,run,loss', '0,keras_logits,0.5']
    """

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)
        self.columns, self.rows = _read(self.path)

    def start(self, first_epoch: int, run: Optional[str] = None) -> str:
        """Names this run (`run`, or one counted in the CSV) and drops the rows its epochs will replace."""
        run = run or next_run_name([row[RUN_COLUMN] for row in self.rows], first_epoch)
        self.rows = [row for row in self.rows
                     if first_epoch == 0 or row[RUN_COLUMN] != run or int(float(row["epoch"])) < first_epoch]
        self.run = run
        return run

    def add(self, epoch: int, values: dict) -> Callable[[], None]:
        """Adds the epoch's row; returns the atomic rewrite of the file with every row so far."""
        row = {"epoch": epoch, RUN_COLUMN: self.run, **values}
        self.columns = self.columns + [key for key in row if key not in self.columns]
        self.rows = self.rows + [row]
        columns, rows, path = self.columns, self.rows, self.path  # this epoch's table, whatever comes later

        def write():
            atomic_write(path, lambda file: file.write(_text(columns, rows)), binary=False, durable=False)

        return write


def _read(path: Path) -> tuple:
    if not path.exists() or path.stat().st_size == 0:
        return [], []
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    columns = list(reader.fieldnames or [])
    if RUN_COLUMN not in columns:  # written before runs had names: one run, the first
        columns.insert(min(1, len(columns)), RUN_COLUMN)
    for row in rows:
        row[RUN_COLUMN] = row.get(RUN_COLUMN) or RUN_DIRECTORY
    return columns, rows


def _text(columns: list, rows: list) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()

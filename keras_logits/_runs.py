"""Run names of `LogitsLogger`: `keras_logits`, `keras_logits_2`, ... shared by TensorBoard runs, CSV rows, snapshots.

A `fit` from epoch 0 starts a new run when the latest one has content; a
resumed `fit` (`initial_epoch > 0`, `BackupAndRestore`) continues the latest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

RUN_DIRECTORY = "keras_logits"


def run_directory(base: Path, first_epoch: int, has_run: Callable[[Path], bool]) -> Path:
    """`base`, or the latest `base_N` to resume, or a new one for a fit from epoch 0 when the latest has a run.

    Example:

    >>> import tempfile
    >>> from pathlib import Path
    >>> base = Path(tempfile.mkdtemp()) / "keras_logits"
    >>> base.mkdir()
    >>> run_directory(base, 0, lambda d: True).name, run_directory(base, 3, lambda d: True).name
    ('keras_logits_2', 'keras_logits')
    """
    runs = [base]
    number = 2
    while base.with_name(f"{base.name}_{number}").exists():
        runs.append(base.with_name(f"{base.name}_{number}"))
        number += 1
    latest = runs[-1]
    if first_epoch > 0 or not has_run(latest):
        return latest
    return base.with_name(f"{base.name}_{number}")


def has_events(directory: Path) -> bool:
    """Whether `directory` holds TensorBoard event files (a run that has started)."""
    return directory.is_dir() and any(p.name.startswith("events.out.tfevents") for p in directory.iterdir())


def next_run_name(names: list, first_epoch: int) -> str:
    """The run of a CSV without TensorBoard runs, given the runs of its rows: the latest to resume, else a new one.

    Example:

    >>> next_run_name(["keras_logits", "keras_logits_2"], 0), next_run_name(["keras_logits"], 4)
    ('keras_logits_3', 'keras_logits')
    """
    if not names:
        return RUN_DIRECTORY
    if first_epoch > 0:
        return names[-1]
    return f"{RUN_DIRECTORY}_{max(_run_number(name) for name in names) + 1}"


def _run_number(name: str) -> int:
    suffix = name[len(RUN_DIRECTORY) + 1:]
    return int(suffix) if name.startswith(RUN_DIRECTORY + "_") and suffix.isdigit() else 1

"""Atomic file writes: a temporary sibling, flushed to disk, then renamed over the target."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator, Union


@contextlib.contextmanager
def _replacing(path: Path, suffix: str) -> Iterator[str]:
    """Yields a temporary sibling of `path`; renames it over `path` on success, removes it on failure."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def atomic_write(path: Union[str, os.PathLike], write: Callable[[IO], None], *, binary: bool = True) -> Path:
    """Calls `write(file)` on a temporary sibling of `path`, then renames it to `path`.

    A reader sees the old file or the new one, never a half-written one; an
    exception or a killed process leaves `path` as it was.

    Example:

    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "rows.csv")
    >>> _ = atomic_write(target, lambda f: f.write("epoch\\n0\\n"), binary=False)
    >>> open(target).read()
    'epoch\\n0\\n'
    """
    path = Path(path)
    with _replacing(path, ".tmp") as temporary:
        with open(temporary, "wb" if binary else "w", **({} if binary else {"newline": ""})) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
    return path


def atomic_keras_save(model, path: Union[str, os.PathLike]) -> Path:
    """Saves `model` as a `.keras` file via a temporary sibling, so `path` is never half-written."""
    path = Path(path)
    with _replacing(path, ".keras") as temporary:  # Keras wants the .keras suffix.
        model.save(temporary)
    return path


def remove_stale_temporaries(directory: Union[str, os.PathLike]) -> list:
    """Removes temporaries that a killed process left in `directory`; returns their names.

    Only files named like this module's temporaries (`.<name>.<pid>-<random>.tmp`)
    whose process no longer runs are removed.
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for entry in directory.glob(".*.*-*.tmp"):
        pid = entry.name.rsplit(".", 2)[-2].split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (this process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

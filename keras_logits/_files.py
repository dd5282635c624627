"""Atomic file writes: a temporary sibling, flushed to disk, then renamed over the target."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import IO, Callable, Iterator, Union

# `.<target name>.<pid>-<random>.tmp`, plus `.keras` where Keras insists on that suffix.
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp(\.keras)?$")


def _create_temporary(path: Path, suffix: str) -> str:
    """Creates an empty, new temporary sibling of `path` with a plain `open(path, "w")`'s permissions.

    `tempfile.mkstemp` creates files 0600 whatever the umask; `os.open(..., 0o666)` lets the kernel
    apply the umask, so the renamed file is as readable as one written in place.
    """
    for _ in range(100):
        temporary = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return str(temporary)
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a temporary file beside '{path}'; remove its stale "
                          f"'.{path.name}.*' files.")


@contextlib.contextmanager
def _replacing(path: Path, suffix: str) -> Iterator[str]:
    """Yields a temporary sibling of `path`; renames it over `path` on success, removes it on failure."""
    temporary = _create_temporary(path, suffix)
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
    exception or a killed process leaves `path` as it was (and a temporary
    that `remove_stale_temporaries` removes later). The file gets the
    permissions `open(path, "w")` would give it (0666 less the umask).

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
    """Saves `model` as a `.keras` file via a temporary sibling, so `path` is never half-written.

    Example:

    >>> import keras, tempfile, os
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> target = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> atomic_keras_save(model, target).name
    'model.keras'
    """
    path = Path(path)
    with _replacing(path, ".tmp.keras") as temporary:  # Keras wants the .keras suffix.
        model.save(temporary)
    return path


def remove_stale_temporaries(directory: Union[str, os.PathLike]) -> list:
    """Removes temporaries that a killed process left in `directory`; returns their names.

    Only files named like this module's temporaries (`.<name>.<pid>-<random>.tmp`,
    or `.tmp.keras` for `atomic_keras_save`) whose process no longer runs are removed.

    Example:

    >>> import tempfile
    >>> remove_stale_temporaries(tempfile.mkdtemp())
    []
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for entry in directory.glob(".*.tmp*"):
        match = _TEMPORARY.match(entry.name)
        if match and not process_alive(int(match["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return sorted(removed)


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (this process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

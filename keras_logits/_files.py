"""Atomic writes: a temporary sibling, flushed to disk, then renamed over the target.

Files (`atomic_write`, `atomic_keras_save`) and export directories share one
naming of their siblings and one clean-up of what a killed process left
(`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import IO, Callable, Iterator, Optional, Union

# `.<target name>.<pid>-<random>.<kind>`: kind `tmp` while a new version is written (plus `.keras` where
# Keras insists on that suffix), `old` for a directory moved aside while its replacement is renamed in.
_SIBLING = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[A-Za-z0-9_]+\.(?P<kind>tmp|old)(\.keras)?$")
TEMPORARY, MOVED_ASIDE = "tmp", "old"


def sibling(path: Union[str, os.PathLike], kind: str = TEMPORARY, suffix: str = "") -> Path:
    """A new name beside `path` that `remove_stale_temporaries` recognises: `.<name>.<pid>-<random>.<kind>`.

    Example:

    >>> import os
    >>> name = sibling("/exports/model").name
    >>> name.startswith(f".model.{os.getpid()}-") and name.endswith(".tmp")
    True
    """
    path = Path(path)
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}{suffix}"


def _create_temporary(path: Path, extension: str = "") -> str:
    """Creates an empty, new temporary sibling of `path` with a plain `open(path, "w")`'s permissions.

    `tempfile.mkstemp` creates files 0600 whatever the umask; `os.open(..., 0o666)` lets the kernel
    apply the umask, so the renamed file is as readable as one written in place.
    """
    for _ in range(100):
        temporary = sibling(path, TEMPORARY, extension)
        try:
            os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return str(temporary)
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a temporary file beside '{path}'; remove its stale "
                          f"'.{path.name}.*' files.")


@contextlib.contextmanager
def _replacing(path: Path, extension: str = "") -> Iterator[str]:
    """Yields a temporary sibling of `path`; renames it over `path` on success, removes it on failure."""
    temporary = _create_temporary(path, extension)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def atomic_write(path: Union[str, os.PathLike], write: Callable[[IO], None], *, binary: bool = True,
                 durable: bool = True) -> Path:
    """Calls `write(file)` on a temporary sibling of `path`, then renames it to `path`.

    A reader sees the old file or the new one, never a half-written one; an
    exception or a killed process leaves `path` as it was (and a temporary
    that `remove_stale_temporaries` removes later). The file gets the
    permissions `open(path, "w")` would give it (0666 less the umask).
    `durable=True` also flushes the data to the disk before the rename
    (`fsync`: the new version survives a power loss, not only a killed
    process); files rewritten every epoch pass False, since the rename alone
    keeps them whole when the process dies and the fsync costs milliseconds.

    Example:

    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "rows.csv")
    >>> _ = atomic_write(target, lambda f: f.write("epoch\\n0\\n"), binary=False)
    >>> open(target).read()
    'epoch\\n0\\n'
    """
    path = Path(path)
    with _replacing(path) as temporary:
        with open(temporary, "wb" if binary else "w", **({} if binary else {"newline": ""})) as file:
            write(file)
            if durable:
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
    with _replacing(path, ".keras") as temporary:  # Keras wants the .keras suffix.
        model.save(temporary)
    return path


def remove_stale_temporaries(directory: Union[str, os.PathLike], *, target: Optional[str] = None) -> list:
    """Cleans what killed processes left in `directory`; returns the names it removed or restored.

    Only siblings named by `sibling` whose process no longer runs are touched
    (this process counts as running: its writers may be busy in other
    threads). A temporary file or directory is removed; a directory moved
    aside (`old`) is renamed back when its target is missing, as when an
    export was killed between its two renames, and removed otherwise. With
    `target`, only the siblings of that name are looked at.

    Example:

    >>> import tempfile
    >>> remove_stale_temporaries(tempfile.mkdtemp())
    []
    """
    cleaned = []
    directory = Path(directory)
    if not directory.is_dir():
        return cleaned
    for entry in directory.glob(".*"):
        match = _SIBLING.match(entry.name)
        if not match or (target is not None and match["target"] != target) or process_alive(int(match["pid"])):
            continue
        original = directory / match["target"]
        if match["kind"] == MOVED_ASIDE and not original.exists():
            os.rename(entry, original)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        cleaned.append(entry.name)
    return sorted(cleaned)


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (this process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

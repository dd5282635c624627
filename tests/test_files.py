"""Atomic writes: permissions of a plain open(), and temporaries that the clean-up recognises."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_logits._files import atomic_keras_save, atomic_write, remove_stale_temporaries


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def dead_pid():
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(finished.stdout)


def test_atomic_write_gives_the_permissions_of_a_plain_open(tmp_path, umask_022):
    plain = tmp_path / "plain.csv"
    with open(plain, "w") as file:
        file.write("x")
    atomic = atomic_write(tmp_path / "atomic.csv", lambda f: f.write("x"), binary=False)
    assert oct(atomic.stat().st_mode & 0o777) == oct(plain.stat().st_mode & 0o777) == oct(0o644)


def test_atomic_keras_save_gives_the_permissions_of_a_plain_save_and_loads(tmp_path, umask_022):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.save(tmp_path / "plain.keras")
    path = atomic_keras_save(model, tmp_path / "atomic.keras")
    assert (path.stat().st_mode & 0o777) == ((tmp_path / "plain.keras").stat().st_mode & 0o777) == 0o644
    reloaded = keras.saving.load_model(path)
    x = np.ones((1, 2), "float32")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.keras", "plain.keras"]


class _Killed(Exception):
    pass


class _DiesWhileSaving(keras.Model):
    def save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as file:
            file.write(b"half a zip")
        raise _Killed


def test_temporary_of_a_killed_keras_save_is_matched_by_the_clean_up(tmp_path):
    """A `keras-logits expose` killed mid-save leaves `.<name>.<pid>-<random>.tmp.keras`; the next clean-up
    removes it."""
    from keras_logits import _files as files

    temporary = files._create_temporary(tmp_path / "exposed.keras", ".keras")
    dead = tmp_path / os.path.basename(temporary).replace(f".{os.getpid()}-", f".{dead_pid()}-")
    os.rename(temporary, dead)
    live = files._create_temporary(tmp_path / "other.keras", ".keras")  # this process: still writing
    assert remove_stale_temporaries(tmp_path) == [dead.name]
    assert not dead.exists() and os.path.exists(live)


def test_failed_keras_save_leaves_no_temporary(tmp_path):
    with pytest.raises(_Killed):
        atomic_keras_save(_DiesWhileSaving(), tmp_path / "model.keras")
    assert list(tmp_path.iterdir()) == []


def test_clean_up_removes_dead_writers_csv_temporaries_and_keeps_other_files(tmp_path):
    pid = dead_pid()
    stale = tmp_path / f".log.csv.{pid}-abc123.tmp"
    unrelated = tmp_path / ".hidden.tmp"
    kept = tmp_path / "log.csv"
    for path in (stale, unrelated, kept):
        path.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [stale.name]
    assert unrelated.exists() and kept.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def _directory(path, content="x"):
    path.mkdir()
    (path / "saved_model.pb").write_text(content)
    return path


def test_clean_up_of_an_export_removes_a_dead_staging_directory_and_restores_a_moved_aside_one(tmp_path):
    """What a killed export leaves, named by `sibling`: a staging directory, an old export moved aside."""
    from keras_logits._files import MOVED_ASIDE, sibling

    pid = dead_pid()
    staging = _directory(tmp_path / sibling(tmp_path / "model").name.replace(f".{os.getpid()}-", f".{pid}-"))
    moved = _directory(tmp_path / sibling(tmp_path / "model", MOVED_ASIDE).name.replace(f".{os.getpid()}-",
                                                                                          f".{pid}-"), "old")
    other = _directory(tmp_path / f".other.{pid}-0000abcd.tmp")
    live = _directory(sibling(tmp_path / "model"))  # this process: an export still writing
    assert remove_stale_temporaries(tmp_path, target="model") == sorted([staging.name, moved.name])
    assert (tmp_path / "model" / "saved_model.pb").read_text() == "old"  # restored: the target was missing
    assert not staging.exists() and not moved.exists() and other.exists() and live.exists()


def test_a_moved_aside_directory_of_a_dead_process_is_removed_when_its_target_exists(tmp_path):
    pid = dead_pid()
    _directory(tmp_path / "model", "new")
    moved = _directory(tmp_path / f".model.{pid}-0000abcd.old", "old")
    assert remove_stale_temporaries(tmp_path) == [moved.name]
    assert (tmp_path / "model" / "saved_model.pb").read_text() == "new" and not moved.exists()

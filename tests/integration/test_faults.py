"""Faults: a training process killed with SIGKILL mid-epoch, then restarted, keeps continuous logs.

The training script runs in its own process with LogitsLogger (TensorBoard, CSV, npz) and
BackupAndRestore. The first run kills itself with SIGKILL in the middle of epoch 3 (no Python
clean-up runs); the second, identical but for the kill, resumes. An export killed mid-write
is covered by tests/test_export_model.py::test_moved_aside_export_of_a_dead_process_is_restored.
"""

import csv
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from tests.conftest import BACKEND

pytestmark = pytest.mark.slow

EPOCHS, KILL_EPOCH = 6, 3

TRAIN = r"""
import os, signal, sys
import keras, numpy as np
import keras_logits

log_dir, kill_epoch = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 6)).astype("float32")
y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0).astype("int64")
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(3, activation="softmax")])
exposed = keras_logits.expose(model)
exposed.compile(optimizer="adam", loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                metrics={"logits": keras_logits.metrics.default_metrics("softmax")})


class KillMidEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == kill_epoch and batch == 7:  # the epoch's last step: after DURABLE_BY_STEP
            os.kill(os.getpid(), signal.SIGKILL)


callbacks = [keras.callbacks.BackupAndRestore(os.path.join(log_dir, "backup")),
             keras_logits.LogitsLogger((x[:64], y[:64]), log_dir=log_dir, csv_path=os.path.join(log_dir, "log.csv"))]
if kill_epoch >= 0:
    callbacks.append(KillMidEpoch())
exposed.fit(x, y, epochs=int(sys.argv[3]), batch_size=32, verbose=0, callbacks=callbacks)
print("finished")
"""


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("killed")
    script = log_dir.parent / f"{log_dir.name}_train.py"
    script.write_text(TRAIN)
    environment = {**os.environ, "KERAS_BACKEND": BACKEND}

    def train(kill_epoch):
        return subprocess.run([sys.executable, str(script), str(log_dir), str(kill_epoch), str(EPOCHS)],
                              capture_output=True, text=True, timeout=600, env=environment)

    killed = train(KILL_EPOCH)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    rows_after_kill = _rows(log_dir / "log.csv")
    resumed = train(-1)
    assert resumed.returncode == 0 and "finished" in resumed.stdout, resumed.stderr[-3000:]
    return log_dir, rows_after_kill


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_the_killed_run_had_logged_every_finished_epoch(killed_then_resumed):
    _, rows_after_kill = killed_then_resumed
    assert [row["epoch"] for row in rows_after_kill] == [str(e) for e in range(KILL_EPOCH)]


def test_csv_is_one_continuous_table(killed_then_resumed):
    log_dir, rows_after_kill = killed_then_resumed
    rows = _rows(log_dir / "log.csv")
    assert [row["epoch"] for row in rows] == [str(e) for e in range(EPOCHS)]
    assert rows[:KILL_EPOCH] == rows_after_kill  # epochs before the kill are kept as written
    assert all(np.isfinite(float(row["probe_logits_ece"])) for row in rows)


def test_snapshots_one_per_epoch_and_all_readable(killed_then_resumed):
    log_dir, _ = killed_then_resumed
    snapshots = sorted((log_dir / "keras_logits" / "snapshots").glob("epoch_*.npz"))
    assert [p.name for p in snapshots] == [f"epoch_{e:04d}.npz" for e in range(EPOCHS)]
    for path in snapshots:
        with np.load(path, allow_pickle=False) as snapshot:
            assert snapshot["logits"].shape == (64, 3) and np.isfinite(snapshot["logits"]).all()


def test_tensorboard_has_one_value_per_epoch(killed_then_resumed):
    log_dir, _ = killed_then_resumed
    accumulator = event_accumulator.EventAccumulator(str(log_dir / "keras_logits"), size_guidance={"scalars": 0})
    accumulator.Reload()
    steps = [event.step for event in accumulator.Scalars("probe_logits_ece")]
    assert sorted(set(steps)) == list(range(EPOCHS))


def test_no_temporary_or_partial_files_are_left(killed_then_resumed):
    log_dir, _ = killed_then_resumed
    leftovers = [p.name for p in log_dir.rglob("*") if p.suffix == ".tmp" or p.name.startswith(".")]
    assert leftovers == []

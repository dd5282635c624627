"""Two JAX processes on 127.0.0.1 train one model with the metrics and LogitsLogger.

Each process feeds its own shard (`auto_shard_dataset = False`); global batch k is the k-th
local batch of process 0 followed by that of process 1, so a single process fed the batches in
that order is the reference. Checks: metric values equal the single-process run, both processes
see the same History, one set of log files written by process 0 alone, the probe snapshot equals
`expose(model).predict(probe)` on the final weights, process 0 exports the trained model, and a
process that dies makes the other fail within a bounded time instead of hanging.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.backends("jax")]

RELATIVE_TOLERANCE = 1e-5
TIMEOUT = 300  # seconds for a whole run; both processes are killed past it
PROBE = 101  # odd: not divisible by the processes

WORKER = r"""
import json, os, signal, sys
os.environ["KERAS_BACKEND"] = "jax"
import jax

port, process, processes, log_dir, out, die = sys.argv[1:7]
process, processes = int(process), int(processes)
if processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=processes,
                               process_id=process, heartbeat_timeout_seconds=10)
import keras, numpy as np
import keras_logits

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 12)).astype("float32")
y = x[:, :3].argmax(axis=1).astype("int64")
BATCH = 64
if processes > 1:
    local = BATCH // processes
    rows = np.concatenate([np.arange(k * BATCH + process * local, k * BATCH + (process + 1) * local)
                           for k in range(len(x) // BATCH)])
    train_x, train_y, batch_size = x[rows], y[rows], local
    distribution = keras.distribution.DataParallel(devices=jax.devices())
    distribution.auto_shard_dataset = False  # each process feeds its own shard
    keras.distribution.set_distribution(distribution)
else:
    train_x, train_y, batch_size = x, y, BATCH


def classifier():
    return keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")])


keras.utils.set_random_seed(0)
model = classifier()
exposed = keras_logits.expose(model)
exposed.compile(optimizer=keras.optimizers.SGD(0.1),
                loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                metrics={"logits": keras_logits.metrics.default_metrics("softmax")})


class DieInSecondEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if die == "1" and process == 1 and self.epoch == 1 and batch == 1:
            os.kill(os.getpid(), signal.SIGKILL)


logger = keras_logits.LogitsLogger((x[:101], y[:101]), log_dir=log_dir, csv_path=os.path.join(log_dir, "log.csv"))
history = exposed.fit(train_x, train_y, batch_size=batch_size, epochs=3, shuffle=False, verbose=0,
                      callbacks=[logger, DieInSecondEpoch()]).history
result = {"history": history, "os_pid": os.getpid()}
if process == 0:  # expose() and export() on the trained model, in process 0, outside the distribution
    keras.distribution.set_distribution(None)
    result["probe_logits"] = keras_logits.expose(model).predict(x[:101], verbose=0)["logits"].tolist()
    if processes > 1:
        keras_logits.export(model, os.path.join(out, "export"))
with open(os.path.join(out, f"result_{processes}_{process}.json"), "w") as file:
    json.dump(result, file)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_processes(tmp_path, processes, log_dir, die=False):
    """Starts `processes` workers; returns (return codes, seconds each took). Kills all on timeout."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = free_port()
    environment = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": ""}
    start = time.monotonic()
    workers = [subprocess.Popen([sys.executable, str(script), str(port), str(i), str(processes), str(log_dir),
                                 str(tmp_path), "1" if die else "0"], env=environment,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(processes)]
    codes, seconds, errors = [], [], []
    try:
        for worker in workers:
            _, stderr = worker.communicate(timeout=max(1.0, TIMEOUT - (time.monotonic() - start)))
            codes.append(worker.returncode)
            seconds.append(time.monotonic() - start)
            errors.append(stderr)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return codes, seconds, errors


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("multi_process")
    codes, _, errors = run_processes(tmp_path, 2, tmp_path / "logs_two")
    assert codes == [0, 0], errors[0][-3000:] + errors[1][-3000:]
    codes, _, errors = run_processes(tmp_path, 1, tmp_path / "logs_one")
    assert codes == [0], errors[0][-3000:]
    results = {name: json.loads((tmp_path / f"result_{name}.json").read_text()) for name in ("2_0", "2_1", "1_0")}
    return tmp_path, results


def test_metric_values_equal_the_single_process_run(runs):
    _, results = runs
    single, process_0, process_1 = results["1_0"]["history"], results["2_0"]["history"], results["2_1"]["history"]
    assert "logits_ece" in single and "probe_logits_ece" in single
    assert sorted(process_0) == sorted(single)
    for key in single:
        np.testing.assert_allclose(process_0[key], single[key], rtol=RELATIVE_TOLERANCE, atol=1e-6, err_msg=key)
        assert process_1[key] == process_0[key], key  # every process sees the same global values


def test_one_set_of_log_files_written_by_process_0(runs):
    tmp_path, results = runs
    log_dir = tmp_path / "logs_two"
    events = list((log_dir / "keras_logits").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].name.endswith(f".{results['2_0']['os_pid']}.0")
    snapshots = log_dir / "keras_logits" / "snapshots"
    assert sorted(p.name for p in snapshots.iterdir()) == [f"epoch_{e:04d}.npz" for e in range(3)]
    with open(log_dir / "log.csv", newline="") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["0", "1", "2"]
    everything = sorted(p.relative_to(log_dir).as_posix() for p in log_dir.rglob("*") if p.is_file())
    assert everything == sorted([f"keras_logits/{events[0].name}", "log.csv"]
                               + [f"keras_logits/snapshots/epoch_{e:04d}.npz" for e in range(3)])


def test_probe_snapshot_covers_the_probe_once_and_equals_expose_predict(runs):
    tmp_path, results = runs
    path = tmp_path / "logs_two" / "keras_logits" / "snapshots" / "epoch_0002.npz"
    with np.load(path, allow_pickle=False) as snapshot:
        logits = snapshot["logits"]
    assert logits.shape == (PROBE, 3)
    np.testing.assert_allclose(logits, results["2_0"]["probe_logits"], atol=1e-5)
    np.testing.assert_allclose(logits, results["1_0"]["probe_logits"], atol=1e-5)


def test_process_0_exports_the_trained_model(runs):
    tmp_path, results = runs
    manifest = json.loads((tmp_path / "export" / "keras_logits.json").read_text())
    assert manifest["verification"]["max_abs_difference"]["logits"] <= 1e-5 * max(
        1.0, float(np.abs(results["2_0"]["probe_logits"]).max()))
    assert "probe_logits" not in json.loads((tmp_path / "result_2_1.json").read_text())


def test_a_dead_process_makes_the_other_fail_within_a_bounded_time(tmp_path):
    codes, seconds, errors = run_processes(tmp_path, 2, tmp_path / "logs", die=True)
    assert codes[1] == -signal.SIGKILL
    assert codes[0] != 0, "process 0 finished although its peer died"
    assert seconds[0] < 120, f"process 0 took {seconds[0]:.0f} s to notice"
    assert "Task 1 heartbeat timeout" in errors[0] or "Gloo" in errors[0] or "another task died" in errors[0]
    with open(tmp_path / "logs" / "log.csv", newline="") as file:  # what was written before stays valid
        assert [row["epoch"] for row in csv.DictReader(file)] == ["0"]

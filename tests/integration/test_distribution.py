"""Metrics and LogitsLogger give the same values under jit_compile, steps_per_execution and
tf.distribute.MirroredStrategy over two logical CPU devices (stand-ins for two GPUs).

Runs in a subprocess because logical devices must be configured before TensorFlow starts.
"""

import json
import os
import subprocess
import sys

import pytest

# tf.distribute.MirroredStrategy; the JAX data-parallel test is test_jax_distribution.py.
pytestmark = [pytest.mark.slow, pytest.mark.backends("tensorflow")]

SCRIPT = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np, keras_logits
from keras_logits.cli.demo import build_digits_cnn, load_digits

(x, y), (x_test, y_test) = load_digits()
x, y = x[:512], y[:512]
reference_weights = build_digits_cnn(seed=3).get_weights()
log_root = sys.argv[1]

def run(name, strategy=None, jit_compile=False, steps_per_execution=1):
    scope = strategy.scope() if strategy else tf.init_scope()
    with scope:
        model = build_digits_cnn(seed=3)
        model.set_weights(reference_weights)
        exposed = keras_logits.expose(model)
        exposed.compile(optimizer=keras.optimizers.SGD(0.1),
                        loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                        metrics={"logits": keras_logits.metrics.default_metrics("softmax")},
                        jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    evaluated = exposed.evaluate(x_test, y_test, batch_size=64, verbose=0, return_dict=True)
    logger = keras_logits.callbacks.LogitsLogger((x_test[:128], y_test[:128]),
                                                 csv_path=os.path.join(log_root, name, "log.csv"))
    history = exposed.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0, callbacks=[logger])
    return {"evaluate": evaluated, "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "replicas": strategy.num_replicas_in_sync if strategy else 1}

runs = {
    "default": run("default"),
    "jit": run("jit", jit_compile=True),
    "steps_per_execution_4": run("spe4", steps_per_execution=4),
    "mirrored": run("mirrored", strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
}
print(json.dumps(runs))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    log_root = tmp_path_factory.mktemp("distribution")
    completed = subprocess.run([sys.executable, "-c", SCRIPT, str(log_root)], capture_output=True, text=True,
                               timeout=900, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1]), log_root


@pytest.mark.parametrize("variant", ["jit", "steps_per_execution_4", "mirrored"])
def test_metric_values_equal_the_default_run(runs, variant):
    results, _ = runs
    default, other = results["default"], results[variant]
    if variant == "mirrored":
        assert other["replicas"] == 2
    # Evaluation: same weights, same data; only reduction order differs.
    for key, value in default["evaluate"].items():
        assert other["evaluate"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    # Two epochs of training, then the logger's probe: float drift only.
    for key, values in default["history"].items():
        assert other["history"][key] == pytest.approx(values, rel=1e-3, abs=1e-4), key
    assert "probe_logits_ece" in other["history"] and "logits_ece" in other["history"]


def test_mirrored_logger_writes_one_row_per_epoch_with_the_probe_counted_once(runs):
    results, log_root = runs
    lines = (log_root / "mirrored" / "log.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,") and len(lines) == 3
    for key in ("probe_logits_mean", "probe_logits_accuracy", "probe_logits_ece"):
        assert results["mirrored"]["history"][key] == pytest.approx(results["default"]["history"][key],
                                                                   rel=1e-3, abs=1e-4), key

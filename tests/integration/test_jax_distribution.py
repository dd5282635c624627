"""keras.distribution.DataParallel over two host devices gives the single-device metric values (JAX)."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

# The script pins KERAS_BACKEND=jax itself; it runs in the JAX pass of CI.
pytestmark = [pytest.mark.slow, pytest.mark.backends("jax")]

RELATIVE_TOLERANCE = 1e-5

SCRIPT = r"""
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, keras, numpy as np
import keras_logits

out_dir = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 12)).astype("float32")
y = (x[:, :3].argmax(axis=1)).astype("int64")
probe_x, probe_y = x[:101], y[:101]  # odd: not divisible by the two devices


def build():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    exposed = keras_logits.expose(model)
    exposed.compile(optimizer=keras.optimizers.SGD(0.1),
                    loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                    metrics={"logits": keras_logits.metrics.default_metrics("softmax")})
    return exposed


def run(name):
    exposed = build()
    evaluated = exposed.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    logger = keras_logits.LogitsLogger((probe_x, probe_y), csv_path=os.path.join(out_dir, name, "log.csv"))
    history = exposed.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[logger]).history
    padded = np.concatenate([probe_x, probe_x[:1]])  # Keras itself needs an even batch here
    logits = exposed.predict(padded, batch_size=len(padded), verbose=0)["logits"][:101]
    return {"evaluate": evaluated, "history": history, "probe_logits": logits.tolist()}


single = run("single")
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
parallel = run("parallel")
with open(os.path.join(out_dir, "result.json"), "w") as file:
    json.dump({"devices": len(jax.devices()), "single": single, "parallel": parallel}, file)
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("jax_data_parallel")
    script = out_dir / "script.py"
    script.write_text(SCRIPT)
    completed = subprocess.run([sys.executable, str(script), str(out_dir)], capture_output=True, text=True,
                               timeout=600, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert completed.returncode == 0, completed.stderr[-4000:]
    return out_dir, json.loads((out_dir / "result.json").read_text())


def test_two_devices_were_used(result):
    assert result[1]["devices"] == 2


def test_evaluate_metrics_equal_single_device(result):
    single, parallel = result[1]["single"]["evaluate"], result[1]["parallel"]["evaluate"]
    assert sorted(single) == sorted(parallel) and "logits_ece" in single
    for key in single:
        assert parallel[key] == pytest.approx(single[key], rel=RELATIVE_TOLERANCE, abs=1e-6), key


def test_fit_history_and_probe_summaries_equal_single_device(result):
    single, parallel = result[1]["single"]["history"], result[1]["parallel"]["history"]
    assert "probe_logits_ece" in single and "logits_brier" in single
    for key in single:
        np.testing.assert_allclose(parallel[key], single[key], rtol=RELATIVE_TOLERANCE, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(result[1]["parallel"]["probe_logits"], result[1]["single"]["probe_logits"],
                               atol=1e-5)


def test_the_odd_sized_probe_is_logged_whole_once(result):
    out_dir, _ = result
    with open(out_dir / "parallel" / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    accuracy = float(rows[-1]["probe_logits_accuracy"])
    assert accuracy * 101 == pytest.approx(round(accuracy * 101))  # a fraction of 101 samples, not 102

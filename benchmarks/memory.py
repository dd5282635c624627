"""Memory cost of exposing logits: peak RSS of predict, exposed vs original, in separate processes.

    python -m benchmarks.memory [--quick]

Each measurement is a fresh Python process (peak RSS only grows within a process) that builds
the model, optionally exposes it, and predicts a fixed batch several times; the ratio of the two
peaks has target <= 1.02. Parameter counts are compared too (they must be equal).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_MEASURE = r"""
import json, os, resource, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, numpy as np, keras_logits
from keras_logits.cli.demo import build_digits_cnn
name, exposed, batch = sys.argv[1], sys.argv[2] == "exposed", int(sys.argv[3])
if name == "digits CNN":
    model, shape = build_digits_cnn(), (8, 8, 1)
else:
    model, shape = keras.applications.MobileNetV2(weights=None, classes=10, input_shape=(96, 96, 3)), (96, 96, 3)
runner = keras_logits.expose(model) if exposed else model
images = np.random.default_rng(0).uniform(0, 1, (batch,) + shape).astype("float32")
for _ in range(5):
    runner.predict(images, batch_size=64, verbose=0)
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "params": runner.count_params()}))
"""


def _peak(name: str, variant: str, batch: int) -> dict:
    completed = subprocess.run([sys.executable, "-c", _MEASURE, name, variant, str(batch)], capture_output=True,
                               text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run(*, repeats: int = 3, quick: bool = False) -> list:
    """Median peak RSS over `repeats` alternating process pairs, per workload."""
    import statistics

    workloads = [("digits CNN", 512)] if quick else [("digits CNN", 4096), ("MobileNetV2 96x96", 512)]
    rows = []
    for name, batch in workloads:
        peaks = {"original": [], "exposed": []}
        params = {}
        for _ in range(1 if quick else repeats):
            for variant in ("original", "exposed"):
                measured = _peak(name, variant, batch)
                peaks[variant].append(measured["peak_kib"])
                params[variant] = measured["params"]
        original, exposed = statistics.median(peaks["original"]), statistics.median(peaks["exposed"])
        rows.append((f"{name} predict of {batch}, peak RSS exposed / original", exposed / original, "<= 1.02",
                     f"original {original / 1024:.0f} MiB; parameters {params['exposed']:,} vs "
                     f"{params['original']:,}"))
    return rows


def main(argv=None) -> list:
    from benchmarks._timing import command_line

    return command_line(argv, description=__doc__.splitlines()[0], title="memory", run=run, repeats=3)


if __name__ == "__main__":
    main()

"""What logging logits costs per epoch of the digits CNN, split by part, measured side by side in one process.

    python -m benchmarks.fit_overhead [--backend jax] [--rounds 30] [--epochs 3] [--json out.json]
    PYTHONPATH=/path/to/other/checkout python -m benchmarks.fit_overhead   # the same rows for another version

Every candidate is its own model, compiled once. Each round gives each candidate one turn, a `fit` of
`--epochs` epochs continuing its training, in an order rotated every round; a candidate's time is the
median over rounds of one steady-state epoch of its turn (see `benchmarks._fit_rounds.epoch_rounds`):
with three epochs per turn, the second, from its start to the start of the third, as in a long `fit`
(the logger's epoch-end probe and the wait for the previous epoch's files at the next epoch's start
both land in it). `--epochs 2` times the last epoch up to `fit`'s return instead (the final flush of
the files counts); `--epochs 1` adds each fit's once-per-fit set-up. The candidates:

- plain: the original model, loss on its probabilities (`sparse_categorical_crossentropy`);
- plain again: a second identical one (A/A check: the noise floor of this run);
- exposed: `keras_logits.expose(model)`, loss on the logits, nothing else;
- + metrics: exposed + `keras_logits.metrics.default_metrics()` on the logits;
- + logger: exposed + `LogitsLogger` (probe of 512, TensorBoard, CSV and npz snapshots on), no metrics;
- + both, and + both with a probe of 64;
- floor: exposed + a forward pass over the same 512-sample probe at every epoch end, compiled once
  (`tf.function` / `jax.jit` / torch without grad), outputs copied to the host: the work a logger
  cannot avoid.

Targets (issue 21): + metrics / exposed <= 1.05; + logger / floor <= 1.05. The realistic workload,
where per-epoch costs are amortised as in real training, is `benchmarks.realistic_fit`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks._fit_rounds import (ProbeForward, epoch_rounds, exposed_model, logits_logger, medians,  # noqa: E402
                                    plain_model, print_report, save_json, switch_backend)

try:
    from keras_logits.cli.demo import build_digits_cnn, load_digits  # noqa: E402
except ImportError:  # checkouts before the cli package (6121b4f and older)
    from keras_logits.demo import build_digits_cnn, load_digits  # noqa: E402

WORKLOAD = "digits CNN"
PROBE_SIZE, SMALL_PROBE_SIZE = 512, 64
LABELS = {
    "plain": "plain (original model, loss on probabilities)",
    "plain again": "plain again (A/A check: the noise floor)",
    "exposed": "exposed, loss on logits, nothing else",
    "metrics": "+ default_metrics",
    "logger": f"+ LogitsLogger (probe {PROBE_SIZE}), no metrics",
    "both": "+ both",
    "both small probe": f"+ both, probe {SMALL_PROBE_SIZE}",
    "floor": f"floor: exposed + compiled forward over the probe ({PROBE_SIZE}) per epoch",
}
# Issue 21's targets on the digits CNN: (candidate, reference, limit, label).
TARGETS = (("metrics", "exposed", 1.05, "+ default_metrics / exposed"),
           ("logger", "floor", 1.05, "+ LogitsLogger / floor"))


def candidates(probe: tuple, scratch: Path, *, probe_size: int = PROBE_SIZE, small_probe_size: int = SMALL_PROBE_SIZE):
    """`{name: (compiled model, callbacks)}` for every row; the logger candidates write under `scratch`."""
    probe_x, probe_y = probe
    big, small = (probe_x[:probe_size], probe_y[:probe_size]), (probe_x[:small_probe_size], probe_y[:small_probe_size])
    return {
        "plain": (plain_model(build_digits_cnn), []),
        "plain again": (plain_model(build_digits_cnn), []),
        "exposed": (exposed_model(build_digits_cnn, metrics=False), []),
        "metrics": (exposed_model(build_digits_cnn, metrics=True), []),
        "logger": (exposed_model(build_digits_cnn, metrics=False), [logits_logger(big, scratch / "logger")]),
        "both": (exposed_model(build_digits_cnn, metrics=True), [logits_logger(big, scratch / "both")]),
        "both small probe": (exposed_model(build_digits_cnn, metrics=True),
                             [logits_logger(small, scratch / "both_small_probe")]),
        "floor": (exposed_model(build_digits_cnn, metrics=False), [ProbeForward(big[0])]),
    }


def measure(*, rounds: int, epochs: int = 3, quick: bool = False, log_dir=None, verbose: bool = True) -> dict:
    """Runs the rounds; returns `{"seconds": {name: [s, ...]}, "targets": [(label, ratio, limit)], ...}`."""
    (x_train, y_train), (x_test, y_test) = load_digits()
    probe = (np.resize(x_test, (PROBE_SIZE, *x_test.shape[1:])), np.resize(y_test, PROBE_SIZE))
    sizes = {}
    if quick:  # proves it runs: a few batches, small probes
        x_train, y_train = x_train[:256], y_train[:256]
        sizes = {"probe_size": 64, "small_probe_size": 16}
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(log_dir) if log_dir else Path(scratch)
        seconds = epoch_rounds(candidates(probe, directory, **sizes), x_train, y_train, rounds=rounds, epochs=epochs,
                               progress=print if verbose else None)
    times = medians(seconds)
    targets = [(label, times[name] / times[reference], limit) for name, reference, limit, label in TARGETS]
    settings = {"rounds": rounds, "epochs_per_turn": epochs, "batch_size": 64, "train_samples": len(x_train),
                "probe_size": sizes.get("probe_size", PROBE_SIZE), "quick": quick}
    return {"seconds": seconds, "times": times, "targets": targets, "settings": settings}


def run(*, rounds: int = 30, quick: bool = False) -> list:
    """Rows `(workload, ratio, target, detail)` for `python -m benchmarks`: the digits rows, then the realistic ones."""
    from benchmarks import realistic_fit

    result = measure(rounds=1 if quick else rounds, quick=quick, verbose=False)
    times = result["times"]
    rows = [(f"{WORKLOAD}: {LABELS[name]} / plain fit", times[name] / times["plain"],
             "(~1.00)" if name == "plain again" else "(reference)", f"{times[name] * 1e3:.1f} ms per epoch")
            for name in LABELS if name != "plain"]
    rows += [(f"{WORKLOAD}: {label}", ratio, f"<= {limit:.2f}", "issue 21 target")
             for label, ratio, limit in result["targets"]]
    return rows + realistic_fit.run(quick=quick)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                        help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (one turn of every candidate each)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per turn; 3+: the second-to-last is timed (a steady-state epoch), "
                             "else the last, up to fit's end (1 also times each fit's set-up)")
    parser.add_argument("--quick", action="store_true", help="a few batches, 1 round: proves the script runs")
    parser.add_argument("--json", help="write the epoch times, ratios and targets to this file")
    parser.add_argument("--log-dir", help="where the loggers write (default: a temporary directory, removed)")
    options = parser.parse_args(argv)
    switch_backend("benchmarks.fit_overhead", options.backend, argv)
    rounds = 1 if options.quick else options.rounds
    result = measure(rounds=rounds, epochs=options.epochs, quick=options.quick, log_dir=options.log_dir)
    title = (f"fit overhead, {WORKLOAD}, batch 64, {result['settings']['train_samples']} samples per epoch, "
             f"{rounds} rounds" + (" (quick: probes of 64 and 16)" if options.quick else ""))
    print_report(title, LABELS, result["seconds"], "plain", result["targets"])
    save_json(options.json, workload=WORKLOAD, settings=result["settings"], seconds=result["seconds"],
              labels=LABELS, targets=result["targets"])
    return result


if __name__ == "__main__":
    main()

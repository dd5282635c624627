"""What logging logits costs on a realistic workload: a ResNet on 32x32x3 images, epochs of 10^4+ samples.

    python -m benchmarks.realistic_fit [--backend jax] [--model resnet|mobilenetv2] [--samples 10240]
                                       [--rounds 5] [--epochs 1] [--json out.json]

Per-epoch costs (the probe's forward pass, file writes) are amortised over an epoch of seconds, as in
real training; per-step costs (the in-step metrics) are not. Rows, measured side by side as in
`benchmarks.fit_overhead` (one turn of each candidate per round, rotating order, median epoch):

- plain: the original model, loss on its probabilities;
- plain again: a second identical one (A/A check: the noise floor of this run);
- + both: `keras_logits.expose(model)`, loss on logits, `default_metrics()` and `LogitsLogger` (probe
  of 512, TensorBoard, CSV and npz snapshots on).

Target (issue 21): + both / plain <= 1.02 on a CPU, <= 1.03 on a GPU. The default model is a small
ResNet (three residual stages of `--width`, 2x`--width`, 4x`--width` channels, batch norm), sized so an
epoch of 10240 samples lasts a few seconds on 2 CPUs; `--model mobilenetv2` is
`keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10)` (about 16 s per
epoch of 10240 samples on 2 CPUs with TensorFlow: for a GPU).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._fit_rounds import (epoch_rounds, exposed_model, logits_logger, medians, plain_model,  # noqa: E402
                                    print_report, save_json, switch_backend)
from benchmarks._timing import has_gpu  # noqa: E402

PROBE_SIZE = 512
LABELS = {
    "plain": "plain (original model, loss on probabilities)",
    "plain again": "plain again (A/A check: the noise floor)",
    "both": f"+ both (exposed, loss on logits, default_metrics, LogitsLogger probe {PROBE_SIZE})",
}


def build_small_resnet(width: int = 8, num_classes: int = 10, seed: int = 0) -> keras.Model:
    """A ResNet-8-like classifier for 32x32x3 inputs ending in a fused softmax `Dense`, as zoo models do."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers

    def conv_bn(x, filters, strides=1, kernel=3):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        return layers.BatchNormalization()(x)

    inputs = keras.Input((32, 32, 3), name="image")
    x = layers.ReLU()(conv_bn(inputs, width))
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        strides = 1 if stage == 0 else 2
        shortcut = x if strides == 1 else conv_bn(x, filters, strides, kernel=1)
        residual = conv_bn(layers.ReLU()(conv_bn(x, filters, strides)), filters)
        x = layers.ReLU()(layers.Add()([shortcut, residual]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="small_resnet")


def builder(model: str, width: int):
    if model == "resnet":
        return lambda: build_small_resnet(width)
    return lambda: keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10)


def target_limit() -> float:
    """Issue 21's limit for + both / plain: 1.02 on a CPU, 1.03 on a GPU (shorter steps, same per-epoch cost)."""
    return 1.03 if has_gpu() else 1.02


def measure(*, model: str = "resnet", width: int = 8, samples: int = 10240, batch_size: int = 64, rounds: int = 5,
            epochs: int = 1, quick: bool = False, log_dir=None, verbose: bool = True) -> dict:
    """Runs the rounds on synthetic images; returns `{"seconds", "times", "targets", "settings", "workload"}`."""
    probe_size = 64 if quick else PROBE_SIZE
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (samples, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, samples)
    build = builder(model, width)
    workload = f"{'small ResNet (width ' + str(width) + ')' if model == 'resnet' else 'MobileNetV2'} 32x32"
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(log_dir) if log_dir else Path(scratch)
        candidates = {"plain": (plain_model(build), [])}
        if not quick:
            candidates["plain again"] = (plain_model(build), [])
        candidates["both"] = (exposed_model(build, metrics=True),
                              [logits_logger((images[:probe_size], labels[:probe_size]), directory / "both")])
        seconds = epoch_rounds(candidates, images, labels, rounds=rounds, epochs=epochs, batch_size=batch_size,
                               progress=print if verbose else None)
    times = medians(seconds)
    targets = [("+ both / plain", times["both"] / times["plain"], target_limit())]
    settings = {"model": model, "width": width if model == "resnet" else None, "samples": samples,
                "batch_size": batch_size, "rounds": rounds, "epochs_per_turn": epochs, "probe_size": probe_size,
                "quick": quick}
    return {"seconds": seconds, "times": times, "targets": targets, "settings": settings, "workload": workload}


def run(*, quick: bool = False) -> list:
    """Rows `(workload, ratio, target, detail)` for `python -m benchmarks` (called by `fit_overhead.run`)."""
    result = measure(samples=256, width=8, rounds=1, quick=True, verbose=False) if quick else measure(verbose=False)
    times, workload = result["times"], result["workload"]
    rows = [(f"{workload}: {LABELS[name]} / plain fit", times[name] / times["plain"], "(~1.00)",
             f"{times[name] * 1e3:.0f} ms per epoch") for name in times if name == "plain again"]
    label, ratio, limit = result["targets"][0]
    rows.append((f"{workload}: {label} fit", ratio, f"<= {limit:.2f}",
                 f"plain {times['plain']:.2f} s per epoch of {result['settings']['samples']} samples"))
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                        help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--model", choices=("resnet", "mobilenetv2"), default="resnet")
    parser.add_argument("--width", type=int, default=8, help="channels of the small ResNet's first stage")
    parser.add_argument("--samples", type=int, default=10240, help="synthetic training samples per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (one turn of every candidate each)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per turn; the last is timed")
    parser.add_argument("--quick", action="store_true", help="256 samples, width 8, 1 round: proves the script runs")
    parser.add_argument("--json", help="write the epoch times, ratios and targets to this file")
    parser.add_argument("--log-dir", help="where the logger writes (default: a temporary directory, removed)")
    options = parser.parse_args(argv)
    switch_backend("benchmarks.realistic_fit", options.backend, argv)
    settings = dict(model=options.model, width=options.width, samples=options.samples,
                    batch_size=options.batch_size, rounds=options.rounds, epochs=options.epochs)
    if options.quick:
        settings.update(samples=256, width=8, rounds=1)
    result = measure(**settings, quick=options.quick, log_dir=options.log_dir)
    labels = {name: label for name, label in LABELS.items() if name in result["times"]}
    print_report(f"realistic fit, {result['workload']}, batch {options.batch_size}, {settings['samples']} samples "
                 f"per epoch, {settings['rounds']} rounds", labels, result["seconds"], "plain", result["targets"])
    save_json(options.json, workload=result["workload"], settings=result["settings"], seconds=result["seconds"],
              labels=labels, targets=result["targets"])
    return result


if __name__ == "__main__":
    main()

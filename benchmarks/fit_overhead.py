"""Training cost of logging logits: fit with metrics + LogitsLogger vs plain fit, side by side.

    python -m benchmarks.fit_overhead [--repeats 15]

Each candidate model is compiled once and warmed up; then every repeat runs `fit` (10 epochs of
the digits, 4 of MobileNetV2) on each candidate in rotating order. The ratio is the median
epoch wall time (epochs after the first of each fit, every callback's epoch-end work included)
over plain fit's: the steady state of a long training run. The whole-fit ratio, which also
counts once-per-fit set-up and compilation, is given beside it. A second, identical plain model
shows the noise floor.
- keras_logits: the exposed model with default_metrics() and LogitsLogger (probe of 512,
  TensorBoard events + histograms, CSV, npz snapshots); target <= 1.03;
- TensorBoard(histogram_freq=1): Keras' own callback logging weight histograms;
- predict per epoch: a naive callback that calls model.predict on the probe each epoch.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_logits  # noqa: E402
from benchmarks._timing import command_line, interleaved_medians  # noqa: E402
from keras_logits.cli.demo import build_digits_cnn, load_digits  # noqa: E402


class PredictEachEpoch(keras.callbacks.Callback):
    """What W&B/Comet-style loggers do: a separate model.predict on the probe every epoch."""

    def __init__(self, probe):
        super().__init__()
        self.probe = probe

    def on_epoch_end(self, epoch, logs=None):
        self.model.predict(self.probe, verbose=0)


def _plain(build):
    model = build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _logged(build, metrics=True):
    exposed = keras_logits.expose(build())
    exposed.compile(optimizer="adam",
                    loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                    metrics={"logits": keras_logits.metrics.default_metrics("softmax")} if metrics else None)
    return exposed


class _EpochStart(keras.callbacks.Callback):
    """First in the callback list: notes when each epoch begins."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def on_epoch_begin(self, epoch, logs=None):
        self.clock["start"] = time.perf_counter()


class _EpochStop(keras.callbacks.Callback):
    """Last in the list: the epoch's wall time includes every other callback's epoch-end work."""

    def __init__(self, clock, samples):
        super().__init__()
        self.clock, self.samples = clock, samples

    def on_epoch_end(self, epoch, logs=None):
        if epoch > 0:  # Epoch 0 of each fit pays one-off tracing / compilation.
            self.samples.append(time.perf_counter() - self.clock["start"])


def overhead_rows(name, build, x, y, probe, repeats, scratch, epochs):
    candidates = {
        "plain": (_plain(build), lambda: []),
        "plain again": (_plain(build), lambda: []),
        "exposed": (_logged(build, metrics=False), lambda: []),
        "keras_logits": (_logged(build), lambda: [keras_logits.callbacks.LogitsLogger(
            probe, log_dir=os.path.join(scratch, name), csv_path=os.path.join(scratch, name, "log.csv"))]),
        "predict per epoch": (_plain(build), lambda: [PredictEachEpoch(probe[0])]),
    }
    if keras.backend.backend() == "tensorflow":  # Keras' TensorBoard callback writes with tf.summary.
        candidates["tensorboard"] = (_plain(build), lambda: [keras.callbacks.TensorBoard(
            os.path.join(scratch, name + "-tb"), histogram_freq=1)])
    epoch_times = {key: [] for key in candidates}

    def runner(key, model, callbacks):
        clock = {}

        def run():
            timers = [_EpochStart(clock)], [_EpochStop(clock, epoch_times[key])]
            model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=timers[0] + callbacks() + timers[1])
        return run

    whole = interleaved_medians({key: runner(key, *value) for key, value in candidates.items()},
                                repeats=repeats, warmup=1)
    per_epoch = {key: statistics.median(values) for key, values in epoch_times.items()}
    base, base_epoch = whole["plain"], per_epoch["plain"]
    labels = {
        "keras_logits": (f"metrics + LogitsLogger (probe {len(probe[0])})", "<= 1.03"),
        "plain again": ("a second plain model (A/A check: the noise floor)", "(~1.00)"),
        "exposed": ("exposed model, loss on logits, no metrics or logger", "(reference)"),
        "predict per epoch": ("model.predict on the probe per epoch", "(alternative)"),
        "tensorboard": ("TensorBoard(histogram_freq=1)", "(alternative)"),
    }
    rows = []
    for key, (label, target) in labels.items():
        if key in whole:
            rows.append((f"{name}: {label} / plain fit", per_epoch[key] / base_epoch, target,
                         f"whole fit() {whole[key] / base:.3f}"
                         + (f"; plain: {base_epoch * 1e3:.0f} ms per epoch, {base:.2f} s per fit() of {epochs} "
                            f"epochs of {len(x)} samples" if key == "keras_logits" else "")))
    return rows


def run(*, repeats: int = 15, quick: bool = False, skip_mobilenet: bool = False) -> list:
    """All rows; `quick` trains the digits CNN briefly (the test suite proves it runs)."""
    (x_train, y_train), (x_test, y_test) = load_digits()
    probe = (np.resize(x_test, (512, 8, 8, 1)), np.resize(y_test, 512))
    with tempfile.TemporaryDirectory() as scratch:
        if quick:
            return overhead_rows("digits CNN", build_digits_cnn, x_train[:256], y_train[:256],
                                 (probe[0][:64], probe[1][:64]), 1, scratch, epochs=3)
        rows = overhead_rows("digits CNN", build_digits_cnn, x_train, y_train, probe, repeats, scratch, epochs=10)
        if not skip_mobilenet:
            rng = np.random.default_rng(0)
            images = rng.uniform(0, 255, (1536, 32, 32, 3)).astype("float32")
            labels = rng.integers(0, 10, 1536)
            rows += overhead_rows(
                "MobileNetV2 32x32", lambda: keras.applications.MobileNetV2(weights=None, classes=10,
                                                                             input_shape=(32, 32, 3)),
                images, labels, (images[:512], labels[:512]), max(3, repeats // 3), scratch, epochs=4)
    return rows


def main(argv=None) -> list:
    return command_line(argv, description=__doc__.splitlines()[0], title="fit overhead", run=run, repeats=15,
                        flags=[("--skip-mobilenet", "digits CNN only")])


if __name__ == "__main__":
    main()

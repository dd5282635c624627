"""Per-step cost of the in-step metrics: the shared default_metrics() against the eight separate classes.

    KERAS_BACKEND=jax python -m benchmarks.metric_step [--repeats 40]

The digits CNN, exposed, loss on "logits", batch 64, compiled four ways (the original with no
metrics; exposed with none; exposed + the eight individual metric classes, each with its own
state and pass, as `default_metrics()` was before it shared one; exposed + `default_metrics()`).
Each repeat trains one epoch of every candidate in rotating order; the ratio is the median
epoch wall time over the exposed model's. Target: default_metrics / exposed <= 1.05. The floor
row compiles eight metrics that compute nothing: Keras converts every logged value to a Python
float after every step (`CallbackList.on_train_batch_end` -> `pythonify_logs`), a cost of the
number of names logged, whatever computes them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from keras_logits import expose, metrics  # noqa: E402
from keras_logits.cli.demo import build_digits_cnn, load_digits  # noqa: E402


def separate_metrics(activation: str = "softmax") -> list:
    """The eight statistics as eight independent metrics: eight passes, seventeen state variables."""
    return [metrics.LogitMean(activation=activation), metrics.LogitStd(activation=activation),
            metrics.TopMargin(activation=activation), metrics.NonFiniteLogits(activation=activation),
            metrics.MeanConfidence(activation=activation), metrics.MeanEntropy(activation=activation),
            metrics.ExpectedCalibrationError(activation=activation), metrics.BrierScore(activation=activation)]


class _Constant(keras.metrics.Metric):
    """Updates nothing and reports its one variable: what Keras itself pays per logged value per step."""

    def __init__(self, name):
        super().__init__(name=name)
        self.value = self.add_variable(shape=(), initializer="zeros", name="value")

    def update_state(self, *args, **kwargs):
        pass

    def result(self):
        return keras.ops.convert_to_tensor(self.value)


class _EpochClock(keras.callbacks.Callback):
    """Wall time of each epoch, without fit()'s once-per-call set-up."""

    def __init__(self, samples):
        super().__init__()
        self.samples = samples

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.samples.append(time.perf_counter() - self.start)


def candidates() -> dict:
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    models = {}
    original = build_digits_cnn()
    original.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    models["original, no metrics"] = original
    for name, metric_list in (("exposed, no metrics", None),
                              ("exposed + eight no-op metrics (floor)", [_Constant(f"c{i}") for i in range(8)]),
                              ("exposed + eight separate metrics", separate_metrics()),
                              ("exposed + default_metrics()", metrics.default_metrics())):
        exposed = expose(build_digits_cnn())
        exposed.compile(optimizer="adam", loss={"logits": loss},
                        metrics=None if metric_list is None else {"logits": metric_list})
        models[name] = exposed
    return models


def run(repeats: int = 40) -> dict:
    """`{candidate: median epoch seconds}`, epochs interleaved in rotating order after one warm-up each."""
    (x, y), _ = load_digits()
    models = candidates()
    samples = {name: [] for name in models}
    names = list(models)
    for name in names:  # warm-up: tracing / compilation
        models[name].fit(x, y, batch_size=64, epochs=1, verbose=0)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            models[name].fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[_EpochClock(samples[name])])
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    medians = run(parser.parse_args(argv).repeats)
    base = medians["exposed, no metrics"]
    print(f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs, median epoch of the digits CNN (1437 samples)")
    for name, seconds in medians.items():
        print(f"  {name:40s} {seconds * 1e3:7.2f} ms  {seconds / base:5.3f} x exposed")
    return medians


if __name__ == "__main__":
    main()

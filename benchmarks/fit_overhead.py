"""Training cost of logging logits: fit with metrics + LogitsLogger vs plain fit, side by side.

    python -m benchmarks.fit_overhead [--repeats 15]

Each candidate model is compiled once and warmed up; then every repeat runs `fit` (10 epochs of
the digits, 2 of MobileNetV2) on each candidate in rotating order, and the medians are compared
with plain fit of the original model. A second, identical plain model shows the noise floor.
- keras_logits: the exposed model with default_metrics() and LogitsLogger (probe of 512,
  TensorBoard events + histograms, CSV, npz snapshots); target <= 1.03;
- TensorBoard(histogram_freq=1): Keras' own callback logging weight histograms;
- predict per epoch: a naive callback that calls model.predict on the probe each epoch.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_logits  # noqa: E402
from benchmarks._timing import interleaved_medians, machine, print_table  # noqa: E402
from keras_logits.demo import build_digits_cnn, load_digits  # noqa: E402


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

    def runner(model, callbacks):
        return lambda: model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=callbacks())

    medians = interleaved_medians({key: runner(*value) for key, value in candidates.items()},
                                  repeats=repeats, warmup=1)
    base = medians["plain"]
    detail = f"plain fit {base:.2f} s for {epochs} epochs of {len(x)} samples"
    return [
        (f"{name}: metrics + LogitsLogger (probe {len(probe[0])}) / plain fit", medians["keras_logits"] / base,
         "<= 1.03", detail),
        (f"{name}: a second plain model / plain fit (A/A check: the noise floor)", medians["plain again"] / base,
         "(~1.00)", "identical configuration"),
        (f"{name}: exposed model, loss on logits, no metrics or logger / plain fit",
         medians["exposed"] / base, "(reference)", "from_logits=True loss instead of the fused softmax's"),
        (f"{name}: model.predict on the probe per epoch / plain fit", medians["predict per epoch"] / base,
         "(alternative)", ""),
    ] + ([(f"{name}: TensorBoard(histogram_freq=1) / plain fit", medians["tensorboard"] / base, "(alternative)",
           "")] if "tensorboard" in medians else [])


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--skip-mobilenet", action="store_true")
    options = parser.parse_args(argv)
    repeats = options.repeats
    (x_train, y_train), (x_test, y_test) = load_digits()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (1536, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, 1536)
    with tempfile.TemporaryDirectory() as scratch:
        rows = overhead_rows("digits CNN", build_digits_cnn, x_train, y_train,
                             (np.resize(x_test, (512, 8, 8, 1)), np.resize(y_test, 512)), repeats, scratch, epochs=10)
        if not options.skip_mobilenet:
            rows += overhead_rows(
                "MobileNetV2 32x32", lambda: keras.applications.MobileNetV2(weights=None, classes=10,
                                                                             input_shape=(32, 32, 3)),
                images, labels, (images[:512], labels[:512]), max(3, repeats // 3), scratch, epochs=2)
    print_table(f"fit overhead ({machine()})", rows)
    return rows


if __name__ == "__main__":
    main()

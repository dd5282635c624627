"""Serving cost of the extra outputs: our export vs Keras' model.export of the original.

    python -m benchmarks.serving_latency [--repeats 200]

Both exports are loaded with tf.saved_model.load and called through serving_default on the
same batch; the ratio of per-batch latency medians (interleaved calls) has target <= 1.05.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_logits  # noqa: E402
from benchmarks._timing import command_line, interleaved_medians  # noqa: E402
from keras_logits.cli.demo import build_digits_cnn  # noqa: E402


def latency_row(name: str, model, batch: np.ndarray, repeats: int, scratch: str) -> tuple:
    model.predict_on_batch(batch)
    ours_dir = keras_logits.export(model, os.path.join(scratch, f"{name}-ours"))
    keras_dir = os.path.join(scratch, f"{name}-keras")
    model.export(keras_dir, format="tf_saved_model", verbose=False)
    ours = tf.saved_model.load(str(ours_dir)).signatures["serving_default"]
    plain = tf.saved_model.load(keras_dir).signatures["serving_default"]
    ours_input = {model.inputs[0].name: tf.constant(batch)}
    plain_input = {next(iter(plain.structured_input_signature[1])): tf.constant(batch)}
    medians = interleaved_medians({
        "ours": lambda: {k: v.numpy() for k, v in ours(**ours_input).items()},
        "keras": lambda: {k: v.numpy() for k, v in plain(**plain_input).items()},
    }, repeats=repeats, warmup=5)
    return (f"{name} serving_default, keras_logits export / model.export", medians["ours"] / medians["keras"],
            "<= 1.05", f"model.export {medians['keras'] * 1e3:.2f} ms per batch of {len(batch)}; "
            "ours adds logits and class_id")


def run(*, repeats: int = 200, quick: bool = False) -> list:
    """All rows; `quick` serves the digits CNN only (the test suite proves it runs)."""
    rng = np.random.default_rng(0)
    digits = rng.uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    with tempfile.TemporaryDirectory() as scratch:
        if quick:
            return [latency_row("digits CNN batch 64", build_digits_cnn(), digits, 20, scratch)]
        return [
            latency_row("digits CNN batch 64", build_digits_cnn(), digits, repeats * 5, scratch),
            latency_row("MobileNetV2 96x96 batch 64",
                        keras.applications.MobileNetV2(weights=None, classes=10, input_shape=(96, 96, 3)),
                        rng.uniform(0, 255, (64, 96, 96, 3)).astype("float32"), max(20, repeats // 10), scratch),
        ]


def main(argv=None) -> list:
    return command_line(argv, description=__doc__.splitlines()[0], title="serving latency", run=run, repeats=200)


if __name__ == "__main__":
    main()

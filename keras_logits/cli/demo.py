"""The README demo: train a small CNN on scikit-learn's digits, expose it, show both outputs."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np


SERVING_HINT = """Load it anywhere TensorFlow runs, without keras-logits:
{example}
Serve it with TF Serving: docker run -p 8501:8501 -v "{path}:/models/digits/1" \\
    -e MODEL_NAME=digits tensorflow/serving"""


@dataclasses.dataclass
class DemoResult:
    """What the demo produced, for callers and tests."""

    model: object
    exposed: object
    accuracy: float
    x_test: np.ndarray
    y_test: np.ndarray
    outputs: dict
    export_dir: Optional[str]


def load_digits(test_fraction: float = 0.2, seed: int = 0):
    """Returns `(x_train, y_train), (x_test, y_test)` of sklearn's digits as 8x8x1 float32 in [0, 1]."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ImportError("The demo's digits ship with scikit-learn: pip install 'keras-logits[demo]' "
                          "(or pip install scikit-learn).") from None

    digits = sklearn_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(labels))
    split = int(len(labels) * (1 - test_fraction))
    train, test = order[:split], order[split:]
    return (images[train], labels[train]), (images[test], labels[test])


def build_digits_cnn(num_classes: int = 10, seed: int = 0):
    """The small CNN used by the demo, benchmarks and reference exports."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes, activation="softmax", name="classifier"),
        ],
        name="digits_cnn",
    )


def run_demo(*, epochs: int = 10, rows: int = 8, seed: int = 0, output_dir: str = "keras_logits_demo",
             echo=print) -> DemoResult:
    """Exposes the digits CNN, trains it with logit logging, prints both outputs, exports it."""
    import keras

    import keras_logits
    from keras_logits.serving import EXPORT_BACKENDS, loading_example, tensorflow_installed

    (x_train, y_train), (x_test, y_test) = load_digits(seed=seed)
    model = build_digits_cnn(seed=seed)
    head = keras_logits.find_head(model)
    echo(f"Head found: {head.describe()}")
    echo(f"model.layers[-2] is '{model.layers[-2].name}' ({type(model.layers[-2]).__name__}): "
         "pooled features, not logits; the softmax is fused into the last Dense.")

    exposed = keras_logits.expose(model)  # Shares model's weights: training it trains model.
    exposed.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        metrics={"logits": ["sparse_categorical_accuracy", *keras_logits.metrics.default_metrics("softmax")]},
    )
    log_dir = os.path.join(output_dir, "logs")
    csv_path = os.path.join(log_dir, "metrics.csv")
    logger = keras_logits.callbacks.LogitsLogger((x_test, y_test), log_dir=log_dir, csv_path=csv_path)
    echo(f"Training on {len(x_train)} scikit-learn digits for {epochs} epochs, logging logits...")
    history = exposed.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=epochs, batch_size=64,
                          verbose=0, callbacks=[logger]).history
    accuracy = float(history["val_logits_sparse_categorical_accuracy"][-1])
    echo(f"Test accuracy {accuracy:.3f}, expected calibration error {history['val_logits_ece'][-1]:.3f}, "
         f"mean confidence {history['val_logits_confidence'][-1]:.3f}, "
         f"top-1 logit margin {history['val_logits_margin'][-1]:.2f}")
    echo(f"Logs: TensorBoard events and per-epoch probe snapshots in {log_dir} "
         f"(tensorboard --logdir {log_dir}), one CSV row per epoch in {csv_path}")

    outputs = exposed.predict(x_test, verbose=0)
    echo("")
    echo(format_table(outputs, y_test, rows=rows))

    echo("")
    scaler = calibrate(outputs["logits"], y_test, echo=echo)

    export_dir = os.path.join(output_dir, "saved_model")
    echo("")
    if keras.backend.backend() not in EXPORT_BACKENDS["tf_saved_model"]:
        echo(f"Export skipped: SavedModel export needs the TensorFlow or JAX backend, this is "
             f"'{keras.backend.backend()}'. Run the demo with KERAS_BACKEND=tensorflow to export.")
        return DemoResult(model, exposed, accuracy, x_test, y_test, outputs, None)
    if not tensorflow_installed():
        echo("Export skipped: a SavedModel is written by TensorFlow, which is not installed here "
             "(pip install 'keras-logits[tensorflow]').")
        return DemoResult(model, exposed, accuracy, x_test, y_test, outputs, None)
    echo(f"Exporting to {export_dir} with T = {scaler.temperature_:.3f} baked in "
         "(verified in a fresh TensorFlow process)...")
    keras_logits.export(model, export_dir, overwrite=True, class_names=[str(d) for d in range(10)],
                        temperature=scaler)
    example = "\n".join(f"    {line}" for line in loading_example(export_dir).splitlines())
    echo(SERVING_HINT.format(example=example, path=os.path.abspath(export_dir)))
    return DemoResult(model, exposed, accuracy, x_test, y_test, outputs, export_dir)


def calibrate(logits: np.ndarray, labels: np.ndarray, echo=print):
    """Fits a temperature on the first half of `logits`, prints ECE and NLL before/after on the second."""
    from keras_logits.calibration import TemperatureScaling, reliability_report

    half = len(logits) // 2
    scaler = TemperatureScaling().fit(logits[:half], labels[:half])
    before = reliability_report(logits[half:], labels[half:], from_logits=True)
    after = reliability_report(scaler.transform(logits[half:]), labels[half:], from_logits=True)
    echo(f"Temperature scaling: T = {scaler.temperature_:.3f}, fitted on {half} held-out samples. "
         f"On the other {len(logits) - half}: ECE {before.ece:.4f} -> {after.ece:.4f}, "
         f"NLL {before.nll:.4f} -> {after.nll:.4f}, accuracy {after.accuracy:.3f} (unchanged).")
    return scaler


def format_table(outputs: dict, labels: Optional[np.ndarray], rows: int = 8) -> str:
    """The first `rows` predictions with their label, logit, probability, log(p) and top-1 margin.

    The command line's prediction table (`keras-logits predict`), with a label column.
    """
    from keras_logits.cli._tables import prediction_table

    return prediction_table(outputs["logits"][:rows], outputs["probabilities"][:rows],
                            labels=None if labels is None else labels[:rows])

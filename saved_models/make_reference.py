"""Re-creates the reference export in saved_models/ (run only when the format changes on purpose).

    python saved_models/make_reference.py

Writes digits_cnn.keras (the trained model), digits_cnn/ (its keras_logits export, a
TensorFlow SavedModel) and digits_cnn_samples.npz (inputs and the in-memory outputs).
"""

import os
import shutil
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_logits  # noqa: E402
from keras_logits.cli.demo import build_digits_cnn, load_digits  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    (x_train, y_train), (x_test, _) = load_digits(seed=0)
    model = build_digits_cnn(seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=5, batch_size=64, verbose=0)
    model.save(HERE / "digits_cnn.keras")
    shutil.rmtree(HERE / "digits_cnn", ignore_errors=True)
    keras_logits.export(model, HERE / "digits_cnn", class_names=[str(digit) for digit in range(10)])
    inputs = x_test[:16]
    outputs = keras_logits.expose(model).predict(inputs, verbose=0)
    np.savez(HERE / "digits_cnn_samples.npz", image=inputs, logits=outputs["logits"],
             probabilities=outputs["probabilities"], class_id=outputs["probabilities"].argmax(-1).astype("int64"))


if __name__ == "__main__":
    main()

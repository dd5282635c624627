"""Shared set-up: backend chosen before Keras is imported, models built once per module."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


BACKEND = keras.backend.backend()


def pytest_collection_modifyitems(config, items):
    """Tests marked `backends("tensorflow", ...)` are skipped, with the reason, on other backends."""
    for item in items:
        marker = item.get_closest_marker("backends")
        if marker is not None and BACKEND not in marker.args:
            needed = " or ".join(marker.args)
            item.add_marker(pytest.mark.skip(reason=f"needs the {needed} backend (running {BACKEND})"))


def logit_tolerance(reference: np.ndarray) -> float:
    """1e-5 relative to the logit scale, the issue's stated tolerance for logits."""
    return 1e-5 * max(1.0, float(np.abs(reference).max()))


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends with the float32 policy, whatever it changed."""
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="session")
def digits():
    from keras_logits.cli.demo import load_digits

    return load_digits()


@pytest.fixture(scope="module")
def trained_digits_cnn(digits):
    """The demo CNN trained for two epochs (weights away from their initial values)."""
    from keras_logits.cli.demo import build_digits_cnn

    (x_train, y_train), _ = digits
    model = build_digits_cnn()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0)
    return model

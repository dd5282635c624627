"""The original model keeps its outputs while its exposed model runs in other threads."""

import threading
import time

import keras
import numpy as np
import pytest
from keras import layers

import keras_logits
from tests.conftest import logit_tolerance

SECONDS = 3.0
X = np.random.default_rng(7).normal(size=(8, 6)).astype("float32")


@pytest.fixture(scope="module")
def models():
    """(original, exposed, reference probabilities, reference logits from a no-activation twin)."""
    original = keras.Sequential(
        [keras.Input((6,)), layers.Dense(16, activation="relu"), layers.Dense(5, activation="softmax")]
    )
    twin = keras.Sequential([keras.Input((6,)), layers.Dense(16, activation="relu"), layers.Dense(5)])
    twin.set_weights([3.0 * w for w in original.get_weights()])  # logits far from 0: a linear layer shows
    original.set_weights(twin.get_weights())
    exposed = keras_logits.expose(original)
    probabilities = keras.ops.convert_to_numpy(original(X))
    logits = keras.ops.convert_to_numpy(twin(X))
    return original, exposed, probabilities, logits


def _call(model):
    outputs = model(X)
    if isinstance(outputs, dict):
        return {key: keras.ops.convert_to_numpy(value) for key, value in outputs.items()}
    return keras.ops.convert_to_numpy(outputs)


def _predict(model):
    return model.predict(X, batch_size=len(X), verbose=0)


def _run_together(run, original, exposed, seconds):
    """Calls `original` in one thread and `exposed` in two, for `seconds`; returns all outputs."""
    stop = threading.Event()
    results = {"original": [], "exposed": []}
    errors = []

    def loop(model, key):
        try:
            while not stop.is_set():
                results[key].append(run(model))
        except Exception as error:  # noqa: BLE001  (reported by the main thread)
            errors.append(error)
            stop.set()

    threads = [threading.Thread(target=loop, args=(original, "original"))]
    threads += [threading.Thread(target=loop, args=(exposed, "exposed")) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize(
    "mode",
    [
        "call",
        # Keras' JAX trainer empties the model's variables for the length of a predict()
        # (`_purge_model_variables`), so no two JAX predicts may share variables at once,
        # exposed or not.
        pytest.param("predict", marks=pytest.mark.backends("tensorflow", "torch")),
    ],
)
def test_original_outputs_stay_probabilities_while_the_exposed_model_runs_in_other_threads(models, mode):
    original, exposed, probabilities, logits = models
    run = _call if mode == "call" else _predict
    run(original), run(exposed)  # compiled functions exist before the threads start
    results = _run_together(run, original, exposed, SECONDS)

    original_outputs = np.stack(results["original"])
    assert len(original_outputs) > 5 and len(results["exposed"]) > 5
    not_distributions = np.abs(original_outputs.sum(-1) - 1.0).max(-1) > 1e-5
    assert not not_distributions.any(), f"{not_distributions.sum()} of {len(original_outputs)} original outputs"
    np.testing.assert_allclose(original_outputs, np.broadcast_to(probabilities, original_outputs.shape), atol=1e-6)
    exposed_logits = np.stack([outputs["logits"] for outputs in results["exposed"]])
    exposed_probabilities = np.stack([outputs["probabilities"] for outputs in results["exposed"]])
    np.testing.assert_allclose(exposed_logits, np.broadcast_to(logits, exposed_logits.shape),
                               rtol=1e-5, atol=logit_tolerance(logits))
    np.testing.assert_allclose(exposed_probabilities, np.broadcast_to(probabilities, exposed_probabilities.shape),
                               atol=1e-6)

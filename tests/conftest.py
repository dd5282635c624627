"""Shared set-up: backend chosen before Keras is imported, models built once per module."""

import fnmatch
import importlib.util
import os

import pytest

TENSORFLOW_INSTALLED = importlib.util.find_spec("tensorflow") is not None
if "KERAS_BACKEND" not in os.environ and not TENSORFLOW_INSTALLED:
    # Keras would fail at import with a message that does not say which backend to pick.
    raise pytest.UsageError("TensorFlow is not installed: run the tests with KERAS_BACKEND=jax or "
                            "KERAS_BACKEND=torch, or pip install 'keras-logits[tensorflow]'.")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402


BACKEND = keras.backend.backend()


# Tests that need TensorFlow installed even on another backend, by node id pattern (fnmatch):
# marked `requires_tensorflow` here, in one place, so a TensorFlow-free environment skips them with
# the reason, and CI runs them on JAX in its TensorFlow environment (`-m requires_tensorflow`) and
# every other JAX test in a venv without TensorFlow (`-m "not requires_tensorflow"`). A test that
# needs TensorFlow and is missing here fails in that venv: add it. Tests marked
# `backends("tensorflow")` alone need no entry.
NEEDS_TENSORFLOW = {
    "tests/serving/test_export.py::*": "SavedModel and ONNX export write TensorFlow graphs",
    "tests/serving/test_scan.py::*": "reads SavedModel protobufs with TensorFlow's",
    "tests/serving/test_runtime.py::*": "loads and calls SavedModels with TensorFlow",
    "tests/test_docstrings.py::*serving._runtime*": "its examples load a SavedModel",
    "tests/serving/test_verification.py::test_both_consumers_return_the_models_own_outputs*": "exports",
    "tests/integration/test_reference_exports.py::test_committed_reference_*": "loads a SavedModel",
    "tests/integration/test_reference_exports.py::test_new_export_*": "exports",
    "tests/integration/test_demo.py::test_demo_trains_exposes_prints_a_table_and_exports": "the demo exports",
    "tests/integration/test_jax_multi_process.py::*": "process 0 exports the trained model",
    "tests/test_calibration.py::test_export_*": "exports",
    "tests/test_logits_model_closure.py::test_export_*": "exports",
    "tests/test_walk_consumers.py::test_export_*": "exports",
    "tests/test_walk_consumers.py::test_a_logits_head_model_exports_*": "exports",
    "tests/test_bad_inputs.py::test_paths_that_exist_as_files_are_refused": "exports",
    "tests/test_matrix.py::test_export_saved_model_*": "exports",
    "tests/test_matrix.py::test_command_line_inspect_expose_export_predict*": "the CLI exports",
    "tests/test_matrix.py::*keras_hub*": "keras-hub depends on tensorflow-text",
    "tests/test_docstrings.py::*serving._export*": "exports",
    "tests/test_docstrings.py::*serving._scan*": "reads SavedModel protobufs",
    "tests/test_callbacks.py::test_probe_may_be_a_dataset_without_labels": "a tf.data probe",
    "tests/test_head.py::test_a_tf_keras_model_is_refused_*": "tf_keras (Keras 2) runs on TensorFlow",
    "tests/test_hub.py::*": "keras-hub depends on tensorflow-text",
    # Keras' own needs (3.15): JaxLayer/FlaxLayer calls tf.inside_function() while building, and
    # keras.callbacks.TensorBoard writes through tf.summary.
    "tests/test_framework_models.py::test_flax_module_in_flax_layer": "Keras' FlaxLayer builds with TensorFlow",
    "tests/test_readme.py::test_readme_backend_example_runs[[]jax[]]": "Keras' FlaxLayer builds with TensorFlow",
    "tests/test_logger_with_keras_callbacks.py::test_probe_values_reach_keras_callbacks_in_either_order*":
        "Keras' TensorBoard callback writes through tf.summary",
}


def _needs_tensorflow(nodeid: str):
    return next((reason for pattern, reason in NEEDS_TENSORFLOW.items() if fnmatch.fnmatchcase(nodeid, pattern)), None)


# tryfirst: the marks must exist before pytest's own hook deselects by `-m`.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Skips, with the reason, tests marked for another backend and, without TensorFlow, those that need it."""
    for item in items:
        reason = _needs_tensorflow(item.nodeid)
        if reason is not None:
            item.add_marker(pytest.mark.requires_tensorflow(reason=reason))
        marker = item.get_closest_marker("backends")
        if marker is not None and BACKEND not in marker.args:
            needed = " or ".join(marker.args)
            item.add_marker(pytest.mark.skip(reason=f"needs the {needed} backend (running {BACKEND})"))
            continue
        marker = item.get_closest_marker("requires_tensorflow")
        if marker is not None and not TENSORFLOW_INSTALLED:
            why = marker.kwargs.get("reason", "it uses TensorFlow")
            item.add_marker(pytest.mark.skip(
                reason=f"needs TensorFlow installed ({why}): pip install 'keras-logits[tensorflow]'"))


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

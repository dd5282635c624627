"""The examples in public docstrings run and print what they claim."""

import doctest
import importlib

import pytest

MODULES = [
    "keras_logits._activations",
    "keras_logits._graph",
    "keras_logits._operations",
    "keras_logits._walk",
    "keras_logits._diagnosis",
    "keras_logits.head",
    "keras_logits._expose",
    "keras_logits._linear_twin",
    "keras_logits.layers",
    "keras_logits.metrics",
    "keras_logits._metric_math",
    "keras_logits._shared_statistics",
    "keras_logits.callbacks",
    pytest.param("keras_logits.serving._export", marks=pytest.mark.backends("tensorflow", "jax")),  # exports
    "keras_logits._files",
    "keras_logits._tensorboard_events",
    "keras_logits._distribution",
    "keras_logits._probe",
    "keras_logits._snapshots",
    "keras_logits._writer_thread",
    "keras_logits._runs",
    "keras_logits._csv_log",
    "keras_logits.scores",
    "keras_logits.calibration",
    "keras_logits._temperature_fit",
    "keras_logits.checks",
    "keras_logits.plots",
    "keras_logits.hub",
    "keras_logits.distillation",
    "keras_logits.statistics",
    "keras_logits.cli._loading",
    "keras_logits.cli._inputs",
    "keras_logits._class_ids",
    "keras_logits.serving._graph",
    "keras_logits.serving._verification",
    pytest.param("keras_logits.serving._scan", marks=pytest.mark.backends("tensorflow", "jax")),  # reads protobufs
    pytest.param("keras_logits.serving._runtime", marks=pytest.mark.backends("tensorflow", "jax")),  # loads one
    "keras_logits.cli._tables",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module_name} has no docstring example"
    assert result.failed == 0

"""Distribution helpers on one process: probe row slicing and padding, chief, process count."""

import subprocess
import sys

import numpy as np
import pytest

from keras_logits._distribution import is_chief, process_count, row_count, take_rows


def test_row_count_of_arrays_lists_and_dicts():
    assert row_count(np.zeros((7, 3))) == 7
    assert row_count([np.zeros((4, 2)), np.zeros((4, 9))]) == 4
    assert row_count((np.zeros((2,)),)) == 2
    assert row_count({"b": np.zeros((5, 1)), "a": np.zeros((5, 2))}) == 5


def test_take_rows_slices_and_zero_pads_every_input_alike():
    x = np.arange(10, dtype="float32").reshape(5, 2)
    np.testing.assert_array_equal(take_rows(x, 1, 3), x[1:3])
    padded = take_rows(x, 3, 8, pad_to=4)
    np.testing.assert_array_equal(padded, [[6, 7], [8, 9], [0, 0], [0, 0]])
    assert padded.dtype == np.float32
    both = take_rows({"a": x, "b": np.arange(5)}, 4, 5, pad_to=2)
    np.testing.assert_array_equal(both["a"], [[8, 9], [0, 0]])
    np.testing.assert_array_equal(both["b"], [4, 0])
    listed = take_rows([x, np.arange(5)], 0, 2)
    np.testing.assert_array_equal(listed[1], [0, 1])
    assert take_rows(x, 0, 5, pad_to=3).shape == (5, 2)  # never truncates


def test_a_single_process_is_the_chief_with_one_process():
    assert is_chief() and process_count() == 1


def test_jax_is_not_asked_for_processes_unless_keras_runs_on_jax():
    """Importing JAX beside another Keras backend must not initialise JAX's backends."""
    pytest.importorskip("jax", reason="needs JAX installed")
    script = (
        "import jax, jax._src.xla_bridge as bridge\n"
        "import keras_logits._distribution as d\n"
        "d.is_chief(); d.process_count()\n"
        "print(bool(bridge._backends))\n"
    )
    for backend, initialised in (("torch", "False"), ("jax", "True")):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                              env={**__import__("os").environ, "KERAS_BACKEND": backend})
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1] == initialised, backend

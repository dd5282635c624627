"""The command line's boundary: TensorFlow only through keras_logits.serving, errors in its own words."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import keras_logits

CLI = Path(keras_logits.__file__).parent / "cli"


def test_no_module_of_the_command_line_imports_tensorflow_itself():
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            assert not any(m.split(".")[0] == "tensorflow" for m in modules), f"{path.name}:{node.lineno}"
            assert not any(m.startswith("keras_logits.serving._") for m in modules), \
                f"{path.name}:{node.lineno} imports a private module of keras_logits.serving"


def test_the_python_advice_to_choose_a_head_is_given_as_the_head_option():
    from keras_logits.cli._main import _one_line

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, {"a": keras.layers.Dense(2, activation="softmax", name="a")(inputs),
                                 "b": keras.layers.Dense(3, activation="sigmoid", name="b")(inputs)})
    with pytest.raises(ValueError) as refusal:
        keras_logits.find_head(model)
    message = _one_line(refusal.value)
    assert message.startswith(f"Model '{model.name}' has 2 classification outputs ['a', 'b'].")
    assert message.endswith("Pick one with --head NAME.") and "find_head" not in message


INSPECT_AND_LIST_TENSORFLOW = r"""
import sys
from keras_logits.cli import main
code = main(["inspect", sys.argv[1]])
print(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))
sys.exit(code)
"""


@pytest.mark.backends("jax")
def test_inspect_on_jax_starts_no_tensorflow(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "model.keras")
    result = subprocess.run([sys.executable, "-c", INSPECT_AND_LIST_TENSORFLOW, str(tmp_path / "model.keras"),
                             "keras_logits.cli"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Head: softmax" in result.stdout and result.stdout.strip().splitlines()[-1] == "[]"

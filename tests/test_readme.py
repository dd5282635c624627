"""The README's examples run: `>>>` blocks as doctests, backend examples on their backend."""

import doctest
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BACKEND_EXAMPLE = re.compile(r"<!-- example: (\w+) -->\n```python\n(.*?)```", re.S)


def test_readme_examples_run():
    result = doctest.testfile(str(README), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5
    assert result.failed == 0


def test_readme_has_the_torch_and_flax_examples():
    assert sorted(backend for backend, _ in BACKEND_EXAMPLE.findall(README.read_text())) == ["jax", "torch"]


@pytest.mark.parametrize("backend", [pytest.param(name, marks=pytest.mark.backends(name)) for name in ("jax", "torch")])
def test_readme_backend_example_runs(backend):
    (code,) = [code for name, code in BACKEND_EXAMPLE.findall(README.read_text()) if name == backend]
    exec(compile(code, f"README.md example: {backend}", "exec"), {})

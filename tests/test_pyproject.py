"""The install: keras and numpy are the core, every other package the code imports comes from an extra."""

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


def _third_party_imports():
    """`{top-level module: first file importing it}` over keras_logits/, at any depth in the code."""
    found = {}
    for path in sorted((ROOT / "keras_logits").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "keras_logits":
                    found.setdefault(top, path.relative_to(ROOT).as_posix())
    return found


def test_keras_and_numpy_are_the_only_core_dependencies():
    assert sorted(_name(r) for r in PYPROJECT["project"]["dependencies"]) == ["keras", "numpy"]


def test_every_package_the_code_imports_is_core_keras_own_or_in_an_extra():
    provided = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    provided |= {_name(r) for r in importlib.metadata.requires("keras") or [] if "extra ==" not in r}
    in_extras = {_name(r) for requirements in EXTRAS.values() for r in requirements}
    installed = importlib.metadata.packages_distributions()
    for module, where in _third_party_imports().items():
        # Not installed here (TensorFlow in a TensorFlow-free venv): its distribution bears its name.
        distributions = {_name(d) for d in installed.get(module, [module])}
        assert distributions & (provided | in_extras), (
            f"{where} imports {module} ({', '.join(sorted(distributions))}), which no extra in pyproject.toml installs")


def test_every_extra_named_in_the_code_and_readme_exists():
    texts = [p.read_text() for p in (ROOT / "keras_logits").rglob("*.py")] + [(ROOT / "README.md").read_text()]
    named = {extra for text in texts for group in re.findall(r"keras-logits\[([\w,-]+)\]|\"\.\[([\w,-]+)\]\"", text)
             for extra in ",".join(group).split(",") if extra}
    assert named, "no extra named anywhere: the pattern no longer matches"
    assert named <= set(EXTRAS), f"named but not in pyproject.toml: {sorted(named - set(EXTRAS))}"


def test_extras_that_name_keras_logits_name_extras_that_exist():
    for extra, requirements in EXTRAS.items():
        for requirement in requirements:
            if _name(requirement) == "keras-logits":
                wanted = re.search(r"\[(.*)\]", requirement).group(1).split(",")
                assert set(wanted) <= set(EXTRAS) - {extra}, f"[{extra}] asks for {requirement}"


def _closure(extra: str) -> set:
    """The distributions an extra installs from this pyproject, its keras-logits[...] references followed."""
    names = set()
    for requirement in EXTRAS[extra]:
        if _name(requirement) == "keras-logits":
            for inner in re.search(r"\[(.*)\]", requirement).group(1).split(","):
                names |= _closure(inner)
        else:
            names.add(_name(requirement))
    return names


# Each of these is TensorFlow or depends on it (keras-hub through tensorflow-text; tf2onnx converts with it).
PULLS_TENSORFLOW = {"tensorflow", "tensorflow-cpu", "tensorflow-text", "tf-keras", "keras-hub", "tf2onnx"}


@pytest.mark.parametrize("extra", ["jax", "torch", "tensorboard", "plots", "cli", "demo", "test-core"])
def test_extras_for_a_tensorflow_free_install_pull_no_tensorflow(extra):
    assert not _closure(extra) & PULLS_TENSORFLOW

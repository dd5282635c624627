"""The tutorial notebooks run top to bottom in a fresh kernel, and their committed outputs are current."""

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="running the notebooks needs the [notebooks] extra")
NotebookClient = pytest.importorskip("nbclient", reason="running the notebooks needs the [notebooks] extra").NotebookClient

# The tutorials are written for the TensorFlow backend (ONNX export, tf.saved_model.load).
pytestmark = [pytest.mark.slow, pytest.mark.backends("tensorflow")]

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_expose_logits.ipynb", "02_logging_during_fit.ipynb",
                                           "03_export_and_serve.ipynb", "04_calibration_and_ood.ipynb",
                                           "05_segmentation_and_tagging.ipynb", "06_distillation.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_without_errors(path, tmp_path):
    committed = nbformat.read(path, as_version=4)
    assert sum(bool(cell.get("outputs")) for cell in committed.cells if cell.cell_type == "code") >= 3, \
        "commit the notebook with its outputs (python notebooks/build_notebooks.py)"
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
              if o.output_type == "error"]
    assert errors == []
    text = "\n".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    if path.stem.startswith("01"):
        assert "pooled features, not 10 logits" in text and "parameters shared: True" in text
        assert "max |logits - reference|: 0.0" in text
    if path.stem.startswith("04"):
        assert "held-out ECE" in text and "double-activation" in text and "sigmoid-categorical" in text
    if path.stem.startswith("05"):
        assert "softmax (fused into Conv2D 'classes'), 4 classes" in text and "per-pixel ECE" in text
        accuracies = re.search(r"probe accuracy over counted pixels: NumPy ([\d.]+), LogitsLogger ([\d.]+)", text)
        assert accuracies and accuracies[1] == accuracies[2]
        masked = re.search(r"accuracy over real characters, NumPy ([\d.]+), masked metric ([\d.]+)", text)
        assert masked and masked[1] == masked[2]
        losses = re.search(r"masked loss: exposed \(logits\) ([\d.]+), original \(probabilities\) ([\d.]+)", text)
        assert losses and losses[1] == losses[2]
    if path.stem.startswith("06"):
        assert "distillation-probabilities" in text and "distillation-loss" in text
        assert re.search(r"default loss='kl_divergence'\s+3\.2248", text)
        assert re.search(r"KLDistillation\(T\)\s+0\.7521", text)
        assert "check_model findings: []" in text and "student softmax(logits) == student.predict: True" in text
        batch = re.search(r"batch loss: NumPy ([\d.]+), distillation_loss ([\d.]+)", text)
        assert batch and batch[1] == batch[2]
    if path.stem.startswith("03"):
        assert "max |onnx - SavedModel| logits:" in text

"""The README demo, run as a user runs it: the console script in a fresh process."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import BACKEND

pytestmark = pytest.mark.slow


def run_cli(*arguments, env=None, timeout=600):
    """Runs `python -m keras_logits.cli ...` (the console script's module) in a fresh process."""
    environment = {**os.environ, "KERAS_BACKEND": BACKEND, **(env or {})}
    return subprocess.run([sys.executable, "-m", "keras_logits.cli", *arguments], capture_output=True,
                          text=True, timeout=timeout, env=environment)


def test_demo_trains_exposes_prints_a_table_and_exports(tmp_path):
    result = run_cli("demo", "--epochs", "6", "--rows", "5", "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Head found: softmax (fused into Dense 'classifier')" in out
    accuracy = float(re.search(r"Test accuracy ([0-9.]+)", out).group(1))
    assert accuracy > 0.7
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s+\d+\s+\d+\s+1\s+\d+\s", line)]
    assert len(rows) == 5  # sample, label, rank 1, class, logit, probability, log(p), margin
    for _, _, _, _, logit, probability, log_probability, margin in rows:
        assert 0 < float(probability) <= 1 and float(margin) >= 0
        assert abs(float(log_probability) - __import__("math").log(float(probability))) < 2e-3
    calibration = re.search(r"Temperature scaling: T = ([0-9.]+).*ECE ([0-9.]+) -> ([0-9.]+), "
                            r"NLL ([0-9.]+) -> ([0-9.]+)", out)
    temperature, _, _, nll_before, nll_after = map(float, calibration.groups())
    assert temperature > 0 and nll_after <= nll_before + 0.05  # held-out NLL: fitted on the other half
    log_dir = tmp_path / "out" / "logs"
    assert f"Logs: TensorBoard events and per-epoch probe snapshots in {log_dir}" in out
    assert len((log_dir / "metrics.csv").read_text().splitlines()) == 1 + 6
    assert len(list((log_dir / "keras_logits" / "snapshots").glob("epoch_*.npz"))) == 6
    assert list((log_dir / "keras_logits").glob("events.out.tfevents.*"))
    export_dir = tmp_path / "out" / "saved_model"
    if BACKEND == "torch":
        assert "Export skipped: SavedModel export needs the TensorFlow or JAX backend" in out
        assert not export_dir.exists()
        return
    assert f"Exporting to {export_dir}" in out and "signatures[\"serving_default\"]" in out
    assert (export_dir / "saved_model.pb").is_file() and (export_dir / "keras_logits.json").is_file()
    manifest = __import__("json").loads((export_dir / "keras_logits.json").read_text())
    assert abs(manifest["head"]["temperature"] - temperature) < 1e-3
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr.lower()


def test_cli_usage_error_exits_with_2():
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr

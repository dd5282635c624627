"""`python -m benchmarks --quick` runs every benchmark and writes a table of ratios.

It asserts that the benchmarks ran and produced numbers, not timings: timings belong to
benchmarks/README.md, measured side by side, never to tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The benchmarks measure the TensorFlow backend (their figures are in benchmarks/README.md).
pytestmark = [pytest.mark.slow, pytest.mark.backends("tensorflow")]

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmarks_run_and_write_a_table_with_every_section(tmp_path):
    output = tmp_path / "results.md"
    output.write_text("# Benchmarks\n\nNotes kept.\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\nTail kept.\n")
    completed = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--output", str(output)], cwd=ROOT,
                               capture_output=True, text=True, timeout=900,
                               env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    text = output.read_text()
    assert "Notes kept." in text and "Tail kept." in text and "\nold\n" not in text
    assert "| section | workload | target | CPU ratio | met | detail |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| section")]
    sections = {row.split("|")[1].strip() for row in rows}
    assert sections == {"inference and expose", "training", "serving", "memory"}
    for row in rows:
        ratio = float(row.split("|")[4])
        assert ratio > 0 and ratio == ratio  # A positive, finite number was measured.
        assert row.split("|")[5].strip() in ("yes", "no", "")
    stored = json.loads((tmp_path / "results" / "cpu.json").read_text())
    assert stored["quick"] and len(stored["rows"]) == len(rows)
    assert any("layers[-2] + Dense re-applied" in row for row in rows)
    assert any("peak RSS" in row for row in rows)


def test_a_gpu_run_adds_its_column_beside_the_cpu_one():
    sys.path.insert(0, str(ROOT))
    from benchmarks.__main__ import table

    cpu = {"machine": "2 CPUs", "date": "2026-11-26", "quick": False,
           "rows": [["training", "fit", 1.04, "<= 1.03", "cpu detail"], ["serving", "export", 1.0, "<= 1.05", "s"]]}
    gpu = {"machine": "H100", "date": "2026-11-27", "quick": False,
           "rows": [["training", "fit", 1.01, "<= 1.03", "gpu detail"]]}
    lines = table({"cpu": cpu, "gpu": gpu}).splitlines()
    assert "| section | workload | target | CPU ratio | met | GPU ratio | met | detail |" in lines
    assert "| training | fit | <= 1.03 | 1.040 | no | 1.010 | yes | cpu detail |" in lines
    assert "| serving | export | <= 1.05 | 1.000 | yes |  |  | s |" in lines
    assert any(line.startswith("- GPU column:") and "H100" in line for line in lines)


def test_target_parsing():
    sys.path.insert(0, str(ROOT))
    from benchmarks.__main__ import target_met

    assert target_met(1.01, "<= 1.02") == "yes"
    assert target_met(1.03, "<= 1.02") == "no"
    assert target_met(0.04, "<= 0.05 and < 0.2 s") == "yes"
    assert target_met(2.0, "(alternative)") == ""

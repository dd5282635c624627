"""`python -m benchmarks --quick` runs every benchmark and writes a table of ratios.

It asserts that the benchmarks ran and produced numbers, not timings: timings belong to
benchmarks/README.md, measured side by side, never to tests.
"""

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
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| section")]
    sections = {row.split("|")[1].strip() for row in rows}
    assert sections == {"inference and expose", "training", "serving", "memory"}
    for row in rows:
        ratio = float(row.split("|")[3])
        assert ratio > 0 and ratio == ratio  # A positive, finite number was measured.
        assert row.split("|")[5].strip() in ("yes", "no", "")
    assert any("layers[-2] + Dense re-applied" in row for row in rows)
    assert any("peak RSS" in row for row in rows)


def test_target_parsing():
    sys.path.insert(0, str(ROOT))
    from benchmarks.__main__ import target_met

    assert target_met(1.01, "<= 1.02") == "yes"
    assert target_met(1.03, "<= 1.02") == "no"
    assert target_met(0.04, "<= 0.05 and < 0.2 s") == "yes"
    assert target_met(2.0, "(alternative)") == ""

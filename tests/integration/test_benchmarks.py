"""The benchmark scripts still run: `python -m benchmarks --quick` and the fit scripts' smoke mode.

They assert that the benchmarks ran and produced numbers, not timings: timings belong to
benchmarks/README.md, measured side by side, never to tests.
"""

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKEND = keras.backend.backend()
# The candidates of each fit script, and those that run a LogitsLogger (their directory under --log-dir).
FIT_SCRIPTS = {
    "fit_overhead": (["plain", "plain again", "exposed", "metrics", "logger", "both", "both small probe", "floor"],
                     {"logger": "logger", "both": "both", "both small probe": "both_small_probe"}),
    "realistic_fit": (["plain", "both"], {"both": "both"}),
}
TARGETS = {"fit_overhead": {"+ default_metrics / exposed": ("metrics", "exposed"),
                            "+ LogitsLogger / floor": ("logger", "floor")},
           "realistic_fit": {"+ both / plain": ("both", "plain")}}


def _run_module(module, *arguments, pythonpath=ROOT, timeout=300):
    environment = {**os.environ, "KERAS_BACKEND": BACKEND, "TF_CPP_MIN_LOG_LEVEL": "3",
                   "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", module, *arguments], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=environment)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(FIT_SCRIPTS))
def test_fit_script_quick_run_times_every_candidate_and_judges_its_targets(script, tmp_path):
    output, logs = tmp_path / "result.json", tmp_path / "logs"
    completed = _run_module(f"benchmarks.{script}", "--quick", "--json", str(output), "--log-dir", str(logs))
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = json.loads(output.read_text())
    candidates, logged = FIT_SCRIPTS[script]
    assert record["backend"] == BACKEND and record["settings"]["quick"]
    assert record["keras_logits"].startswith(str(ROOT))  # the checkout on PYTHONPATH was measured
    rounds = record["settings"]["rounds"]
    assert list(record["epoch_seconds"]) == candidates
    for seconds in record["epoch_seconds"].values():
        assert len(seconds) == rounds and all(0 < value < 600 for value in seconds)
    # Each ratio is the ratio of the medians of the stored epoch times, and its verdict follows from it.
    for target in record["targets"]:
        name, reference = TARGETS[script][target["label"]]
        expected = (statistics.median(record["epoch_seconds"][name])
                    / statistics.median(record["epoch_seconds"][reference]))
        assert target["ratio"] == pytest.approx(expected, rel=1e-12)
        assert target["met"] == (target["ratio"] <= target["limit"])
        verdict = "pass" if target["met"] else "FAIL"
        assert f"| {target['label']} | {target['ratio']:.3f} | <= {target['limit']:.2f} | {verdict} |" \
            in completed.stdout
    assert sorted(target["label"] for target in record["targets"]) == sorted(TARGETS[script])
    # Every logger ran at every turn (warm-up included), continuing one run: one CSV row per epoch, in order.
    turns = (rounds + 1) * record["settings"]["epochs_per_turn"]
    for directory in logged.values():
        with open(logs / directory / "log.csv", newline="") as file:
            rows = list(csv.DictReader(file))
        assert [int(float(row["epoch"])) for row in rows] == list(range(turns))
        assert {row["run"] for row in rows} == {"keras_logits"}
        assert len(list((logs / directory / "keras_logits" / "snapshots").glob("epoch_*.npz"))) == turns
        assert list((logs / directory / "keras_logits").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_pythonpath_chooses_the_checkout_measured_over_the_working_directory(tmp_path):
    # `python -m` puts the working directory (this checkout) first; PYTHONPATH's checkout must win.
    other = tmp_path / "other_checkout"
    other.mkdir()
    (other / "keras_logits").symlink_to(ROOT / "keras_logits", target_is_directory=True)
    environment = {**os.environ, "KERAS_BACKEND": BACKEND, "PYTHONPATH": str(other)}
    version = subprocess.run([sys.executable, "-c", "from benchmarks._fit_rounds import code_version; "
                              "print(code_version())"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                             env=environment)
    assert version.returncode == 0, version.stderr[-3000:]
    assert version.stdout.strip() == str(other)


@pytest.mark.slow
@pytest.mark.backends("tensorflow")  # the section runners' figures in benchmarks/README.md are TensorFlow's
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

"""Runs every benchmark and rewrites the results table in benchmarks/README.md.

    python -m benchmarks            # full run (about 15 minutes on 2 CPUs), rewrites the table
    python -m benchmarks --quick    # small models, few repeats: proves the scripts run
    python -m benchmarks --quick --output /tmp/results.md
    KERAS_BACKEND=jax python -m benchmarks --sections "inference and expose,training"   # on a GPU

Each run stores its rows in results/cpu.json or results/gpu.json (by whether a GPU is
visible) and redraws the table from both, so a GPU run adds its column beside the CPU one.

The table goes between the `results:start` / `results:end` markers of the output file; the
rest of the file (notes, earlier hand-written analysis) is kept.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import re
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks._timing import has_gpu, machine  # noqa: E402
from keras_logits._files import atomic_write  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"
# Imported only when run: serving_latency needs TensorFlow, which a JAX GPU machine may not have.
SECTIONS = [("inference and expose", "expose_overhead"), ("training", "fit_overhead"),
            ("serving", "serving_latency"), ("memory", "memory")]
COLUMNS = ("cpu", "gpu")  # one results/<column>.json per kind of machine; the table shows both


def target_met(ratio: float, target: str) -> str:
    """'yes' / 'no' for targets such as '<= 1.02'; '' for alternatives and references."""
    match = re.match(r"<=\s*([0-9.]+)", target)
    if not match:
        return ""
    return "yes" if ratio <= float(match.group(1)) else "no"


def table(results: dict) -> str:
    """One row per (section, workload), one ratio column per machine kind in `results`."""
    columns = [column for column in COLUMNS if column in results]
    rows, details = {}, {}
    for column in columns:
        for section, workload, ratio, target, detail in results[column]["rows"]:
            key = (section, workload)
            rows.setdefault(key, {"target": target})[column] = ratio
            details.setdefault(key, f"{column.upper()}: {detail}" if column != columns[0] else detail)
    lines = [START, ""]
    for column in columns:
        result = results[column]
        command = "python -m benchmarks" + (" --quick" if result["quick"] else "")
        lines.append(f"- {column.upper()} column: `{command}` on {result['date']}, {result['machine']}.")
    header = ["section", "workload", "target"]
    for column in columns:
        header += [f"{column.upper()} ratio", "met"]
    lines += ["", "| " + " | ".join(header + ["detail"]) + " |", "|" + "---|" * (len(header) + 1)]
    for (section, workload), row in rows.items():
        cells = [section, workload, row["target"]]
        for column in columns:
            ratio = row.get(column)
            cells += ["" if ratio is None else f"{ratio:.3f}",
                      "" if ratio is None else target_met(ratio, row["target"])]
        lines.append("| " + " | ".join(cells + [details[(section, workload)]]) + " |")
    return "\n".join(lines + ["", END])


def write(path: Path, generated: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        text = text[:text.index(START)] + generated + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Latest results\n\n" + generated + "\n"
    atomic_write(path, lambda f: f.write(text), binary=False)


def read_results(directory: Path) -> dict:
    return {column: json.loads((directory / f"{column}.json").read_text())
            for column in COLUMNS if (directory / f"{column}.json").is_file()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, few repeats")
    parser.add_argument("--output", default=str(Path(__file__).resolve().parent / "README.md"))
    parser.add_argument("--sections", default=",".join(name for name, _ in SECTIONS),
                        help="comma-separated sections to run (default: all)")
    parser.add_argument("--results-dir", default=None,
                        help="where <cpu|gpu>.json go (default: results/ beside --output)")
    options = parser.parse_args(argv)
    chosen = [name.strip() for name in options.sections.split(",")]
    unknown = sorted(set(chosen) - {name for name, _ in SECTIONS})
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {[name for name, _ in SECTIONS]}")
    column = "gpu" if has_gpu() else "cpu"
    directory = Path(options.results_dir) if options.results_dir else Path(options.output).parent / "results"
    directory.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "date": datetime.date.today().isoformat(), "quick": options.quick, "rows": []}
    for section, module in SECTIONS:
        if section in chosen:
            print(f"running {section}...", flush=True)
            benchmark = importlib.import_module(f"benchmarks.{module}")
            result["rows"] += [[section, *row] for row in benchmark.run(quick=options.quick)]
            # Stored after every section: a run cut short keeps what it measured.
            atomic_write(directory / f"{column}.json", lambda f: f.write(json.dumps(result, indent=1) + "\n"),
                         binary=False)
    generated = table(read_results(directory))
    write(Path(options.output), generated)
    print(generated)


if __name__ == "__main__":
    main()

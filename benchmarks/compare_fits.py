"""The before/after table of the fit benchmarks: one column per `--json` file, one row per candidate and target.

    python -m benchmarks.compare_fits old_tf.json new_tf.json old_jax.json new_jax.json

Each column is one run of `benchmarks.fit_overhead` or `benchmarks.realistic_fit` (a checkout, a
backend, a machine); its ratios are to the plain fit of the same run, so columns from different
runs compare. Files of different workloads get a table each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence


def tables(records: Dict[str, dict]) -> str:
    """Markdown: per workload, `candidate / plain` rows then the targets, a column per record (by name)."""
    by_workload: Dict[str, List[str]] = {}
    for name, record in records.items():
        by_workload.setdefault(record["workload"], []).append(name)
    lines = []
    for workload, names in by_workload.items():
        lines += [f"\n### {workload}\n"]
        lines += [f"- {name}: {records[name]['machine']}; keras_logits {records[name]['keras_logits']}; "
                  f"{records[name]['date']}" for name in names]
        lines += ["", "| row | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        labels = {}
        for name in names:
            labels.update(records[name]["labels"])
        for key, label in labels.items():
            cells = []
            for name in names:
                medians = records[name]["median_seconds"]
                cells.append(f"{medians[key] / medians['plain']:.3f}" if key in medians else "")
            lines.append(f"| {label} / plain | " + " | ".join(cells) + " |")
        plain = [f"{records[name]['median_seconds']['plain'] * 1e3:.1f} ms" for name in names]
        lines.append("| plain epoch (median) | " + " | ".join(plain) + " |")
        targets = {}
        for name in names:
            for target in records[name]["targets"]:
                targets.setdefault(target["label"], {})[name] = target
        for label, found in targets.items():
            cells = [f"{found[name]['ratio']:.3f} {'pass' if found[name]['met'] else 'FAIL'}" if name in found else ""
                     for name in names]
            limit = next(iter(found.values()))["limit"]
            lines.append(f"| target: {label} <= {limit:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] = None) -> str:
    paths = [Path(path) for path in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        raise SystemExit("usage: python -m benchmarks.compare_fits RESULT.json [RESULT.json ...] "
                         "(written by fit_overhead / realistic_fit --json)")
    records = {path.stem: json.loads(path.read_text()) for path in paths if path.is_file()}
    text = tables(records)
    print(text)
    return text


if __name__ == "__main__":
    main()

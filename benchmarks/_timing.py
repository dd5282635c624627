"""Side-by-side timing: interleaved repeats, medians, ratios, machine description."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, Dict, Sequence


def interleaved_medians(candidates: Dict[str, Callable[[], object]], *, repeats: int = 20,
                        warmup: int = 2) -> Dict[str, float]:
    """Median seconds of each candidate, run in rotating order so drift hits all alike."""
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    samples = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            candidates[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def machine() -> str:
    """CPU count, accelerator, platform and library versions, for the results table."""
    import keras

    backend = keras.backend.backend()
    parts = [f"{os.cpu_count()} CPUs", platform.machine(), f"Python {platform.python_version()}",
             f"Keras {keras.__version__}", f"backend {backend}"]
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        parts.insert(3, f"TensorFlow {tf.__version__}")
        parts.append(f"{len(gpus)} GPU" if gpus else "CPU only")
    elif backend == "jax":
        import jax

        parts.insert(3, f"JAX {jax.__version__}")
        parts.append(f"device {jax.devices()[0].device_kind}")
    elif backend == "torch":
        import torch

        parts.insert(3, f"PyTorch {torch.__version__}")
        parts.append(f"device {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "CPU only")
    return ", ".join(parts)


def has_gpu() -> bool:
    """Whether the active Keras backend sees a GPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.devices()[0].platform == "gpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def print_table(title: str, rows: list) -> None:
    """Prints `rows` of (workload, ratio, target, note) as a Markdown table."""
    print(f"\n### {title}\n")
    print("| workload | ratio | target | detail |")
    print("|---|---|---|---|")
    for workload, ratio, target, detail in rows:
        print(f"| {workload} | {ratio:.3f} | {target} | {detail} |")


def command_line(argv, *, description: str, title: str, run: Callable[..., list], repeats: int,
                 flags: Sequence[tuple] = ()) -> list:
    """The shared `main` of a benchmark script: --repeats, --quick and extra boolean flags.

    Parses `argv`, calls `run(repeats=..., quick=..., **flags)`, prints the rows as a table
    titled `title (machine)` and returns them.
    """
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--quick", action="store_true", help="small models, few repeats: proves it runs")
    for flag, help in flags:
        parser.add_argument(flag, action="store_true", help=help)
    rows = run(**vars(parser.parse_args(argv)))
    print_table(f"{title} ({machine()})", rows)
    return rows

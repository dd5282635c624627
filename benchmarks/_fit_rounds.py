"""Epoch times of several training set-ups measured side by side: one turn of each in rotating order, many rounds.

Shared by `fit_overhead` (the digits CNN rows) and `realistic_fit` (a model whose epoch lasts seconds). Only
the public API of keras_logits is used (`expose`, `metrics.default_metrics`, `LogitsLogger`), so the same
script measures an old checkout and a new one: `PYTHONPATH` selects which.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence


def _checkout_from_pythonpath() -> None:
    """Lets `PYTHONPATH=<checkout>` choose which keras_logits is measured, as the module docstring promises.

    `python -m benchmarks...` puts the working directory first on `sys.path`, so from a checkout's root
    its own keras_logits would win over PYTHONPATH's and an old-vs-new comparison would silently
    measure the same code twice. The `benchmarks` package itself is already imported from here.
    """
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if entry and (Path(entry) / "keras_logits" / "__init__.py").is_file():
            sys.path.insert(0, str(Path(entry).resolve()))
            return


_checkout_from_pythonpath()

import keras  # noqa: E402

import keras_logits  # noqa: E402
from benchmarks._timing import machine  # noqa: E402


def switch_backend(module: str, backend: Optional[str], argv: Optional[Sequence[str]]) -> None:
    """Re-runs `python -m module argv` under `backend` if Keras was imported with another one.

    The backend is fixed when Keras is first imported, so `--backend` cannot change it in-process.
    """
    if backend is None or backend == keras.backend.backend():
        return
    arguments = list(sys.argv[1:] if argv is None else argv)
    os.execve(sys.executable, [sys.executable, "-m", module, *arguments], {**os.environ, "KERAS_BACKEND": backend})


class _EpochClock(keras.callbacks.Callback):
    """First in the callback list: times epoch `timed`, from its `on_epoch_begin` to the next one's (or `fit`'s end)."""

    def __init__(self, timed: int):
        super().__init__()
        self.timed, self.start, self.stop = timed, None, None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.timed:
            self.start = time.perf_counter()
        elif epoch == self.timed + 1:
            self.stop = time.perf_counter()


def epoch_rounds(candidates: Dict[str, tuple], x, y, *, rounds: int, warmup: int = 1, epochs: int = 1,
                 batch_size: int = 64, progress: Optional[Callable[[str], None]] = None) -> Dict[str, List[float]]:
    """Seconds of the timed epoch of each candidate's turns, `rounds` values each.

    `candidates` maps a name to `(compiled model, callbacks)`; the same callback objects are passed to every
    turn, as a user passes theirs to each `fit`. Round `r` gives every candidate, in an order rotated by
    one per round, one turn: `fit(initial_epoch=r * epochs, epochs=(r + 1) * epochs)`, i.e. the training
    continues (a `LogitsLogger` continues its run). With 3 or more epochs per turn the timed epoch is the
    turn's second-to-last, from its `on_epoch_begin` to the next epoch's: a steady-state epoch of a long
    `fit`, its epoch-end work included, with the next epoch's start (where the logger waits for the
    previous epoch's files) in the epoch before it. With fewer, it is the last one, up to the return of
    `fit`: `on_train_end` (the final flush) counts, and with `epochs=1` each callback's once-per-fit
    set-up too. The first `warmup` rounds (tracing, compilation) are not kept.
    """
    names = list(candidates)
    seconds = {name: [] for name in names}
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        first = round_index * epochs
        for name in names[shift:] + names[:shift]:
            model, callbacks = candidates[name]
            clock = _EpochClock(first + epochs - (2 if epochs >= 3 else 1))
            model.fit(x, y, batch_size=batch_size, initial_epoch=first, epochs=first + epochs, verbose=0,
                      callbacks=[clock, *callbacks])
            elapsed = (clock.stop or time.perf_counter()) - clock.start
            if round_index >= warmup:
                seconds[name].append(elapsed)
        if progress is not None:
            progress(f"round {round_index + 1}/{warmup + rounds}" + (" (warm-up)" if round_index < warmup else ""))
    return seconds


def plain_model(build: Callable[[], keras.Model]) -> keras.Model:
    """The original classifier compiled as users do: the loss on its probabilities."""
    model = build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def exposed_model(build: Callable[[], keras.Model], *, metrics: bool) -> keras.Model:
    """The exposed model, its loss on the logits, with or without `default_metrics` on them."""
    exposed = keras_logits.expose(build())
    exposed.compile(optimizer="adam",
                    loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                    metrics={"logits": keras_logits.metrics.default_metrics("softmax")} if metrics else None)
    return exposed


def logits_logger(probe: tuple, directory: Path) -> keras.callbacks.Callback:
    """`LogitsLogger` with every writer on, as a user runs it: TensorBoard events and histograms, CSV, npz."""
    return keras_logits.LogitsLogger(probe, log_dir=directory, csv_path=directory / "log.csv")


def compiled_forward(model: keras.Model) -> Callable:
    """`x -> outputs as NumPy`: the model's inference pass compiled once on the active backend.

    The weights are read at each call (they change every step), the outputs are copied to the host:
    the least a per-epoch logger of these outputs has to do.
    """
    backend = keras.backend.backend()
    to_numpy = lambda outputs: keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)  # noqa: E731
    if backend == "tensorflow":
        import tensorflow as tf

        forward = tf.function(lambda x: model(x, training=False))
        return lambda x: to_numpy(forward(x))
    if backend == "jax":
        import jax

        forward = jax.jit(lambda trainable, non_trainable, x: model.stateless_call(
            trainable, non_trainable, x, training=False)[0])
        return lambda x: to_numpy(forward([v.value for v in model.trainable_variables],
                                          [v.value for v in model.non_trainable_variables], x))
    if backend == "torch":
        import torch

        def forward(x):
            with torch.no_grad():
                return to_numpy(model(x, training=False))
        return forward
    raise ValueError(f"No compiled forward pass for the {backend!r} backend; use tensorflow, jax or torch.")


class ProbeForward(keras.callbacks.Callback):
    """The floor of a per-epoch logger: one compiled forward pass over the probe at each epoch end, nothing else."""

    def __init__(self, probe_x):
        super().__init__()
        self.probe_x = keras.ops.convert_to_tensor(probe_x)  # kept on the device, as a logger can
        self._forward = None

    def on_epoch_end(self, epoch, logs=None):
        if self._forward is None:  # built once, reused by every later fit
            self._forward = compiled_forward(self.model)
        self._forward(self.probe_x)


def medians(seconds: Dict[str, List[float]]) -> Dict[str, float]:
    return {name: statistics.median(values) for name, values in seconds.items()}


def verdict(ratio: float, limit: float) -> str:
    return "pass" if ratio <= limit else "FAIL"


def code_version() -> str:
    """Which keras_logits was measured: its directory and the commit (its checkout's, or a packed copy's COMMIT)."""
    directory = Path(keras_logits.__file__).absolute().parent.parent
    if (directory / "COMMIT").is_file():  # a copy made by `benchmarks/gpu_run.sh pack OLD_COMMIT`
        return f"{directory} at {(directory / 'COMMIT').read_text().strip()}"
    try:
        git = ["git", "-C", str(directory), "rev-parse"]
        top = subprocess.run([*git, "--show-toplevel"], capture_output=True, text=True, timeout=10).stdout.strip()
        # Only the checkout's own commit: a copy inside another repository is not that repository's HEAD.
        commit = subprocess.run([*git, "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() if top and Path(top) == directory.resolve() else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{directory}" + (f" at {commit}" if commit else "")


def print_report(title: str, labels: Dict[str, str], seconds: Dict[str, List[float]], base: str,
                 targets: Sequence[tuple]) -> None:
    """Median epoch times with their quartiles, ratios to `base`, each target `(label, ratio, limit)` with pass/FAIL."""
    print(f"\n### {title}\n\n{machine()}; keras_logits {code_version()}\n")
    print("| candidate | median epoch (ms) | quartiles (ms) | / plain |\n|---|---|---|---|")
    times = medians(seconds)
    for name, label in labels.items():
        low, _, high = statistics.quantiles(seconds[name], n=4) if len(seconds[name]) > 1 else [seconds[name][0]] * 3
        print(f"| {label} | {times[name] * 1e3:.1f} | {low * 1e3:.1f}-{high * 1e3:.1f} | "
              f"{times[name] / times[base]:.3f} |")
    print("\n| target | ratio | limit | met |\n|---|---|---|---|")
    for label, ratio, limit in targets:
        print(f"| {label} | {ratio:.3f} | <= {limit:.2f} | {verdict(ratio, limit)} |")
    sys.stdout.flush()


def save_json(path: Optional[str], *, workload: str, settings: dict, seconds: Dict[str, List[float]],
              labels: Dict[str, str], targets: Sequence[tuple]) -> None:
    """The raw epoch times and the ratios, so a before/after table can be drawn from two runs."""
    if not path:
        return
    times = medians(seconds)
    record = {"workload": workload, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "backend": keras.backend.backend(), "keras_logits": code_version(),
              "settings": settings, "labels": labels, "epoch_seconds": seconds, "median_seconds": times,
              "targets": [{"label": label, "ratio": ratio, "limit": limit, "met": ratio <= limit}
                          for label, ratio, limit in targets]}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1) + "\n")

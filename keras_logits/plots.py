"""Plots of logits and calibration (needs matplotlib: `pip install "keras-logits[plots]"`).

Every function returns a `matplotlib.figure.Figure` built without pyplot (no
global state, no display needed: it works headless and in threads) and, given
`path`, also saves it as a PNG atomically. In a notebook the Figure displays
itself.

- `reliability_diagram`: accuracy per confidence bin against the diagonal,
  over a histogram of the confidences.
- `class_histograms`: per-class histograms of logits and probabilities.
- `logits_over_epochs`: how the probe's logit distribution moves during
  training, from `LogitsLogger`'s `.npz` snapshots.

Per-position logits `(batch, ..., classes)` (pixels, tokens) work everywhere:
every position is one prediction. Histograms are drawn from a seeded uniform
sample of at most `max_values` logits (default 10^6), so a probe of 64 images
of 512x512 pixels and 21 classes (352 million logits) costs no more than a
small one.

Example:

>>> import numpy as np, tempfile, os
>>> from keras_logits import plots
>>> rng = np.random.default_rng(0)
>>> logits, labels = rng.normal(size=(200, 4)) * 3, rng.integers(0, 4, 200)
>>> path = os.path.join(tempfile.mkdtemp(), "reliability.png")
>>> figure = plots.reliability_diagram(logits, labels, from_logits=True, path=path)
>>> os.path.getsize(path) > 0, type(figure).__name__
(True, 'Figure')
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from keras_logits.calibration import ReliabilityReport, reliability_report
from keras_logits._files import atomic_write
from keras_logits.scores import as_logits, probabilities as activate
from keras_logits.statistics import _to_positions

_SNAPSHOT = re.compile(r"epoch_(\d+)\.npz$")
MAX_VALUES = 1_000_000  # logits per histogram; more adds no visible detail and costs memory


def reliability_diagram(logits_or_report, labels=None, *, num_bins: int = 15, activation: str = "softmax",
                        from_logits: Optional[bool] = None, mask=None, ignore_class: Optional[int] = None,
                        sample_weight=None, title: Optional[str] = None,
                        figsize=(5.0, 6.0), dpi: int = 100, path=None):
    """Reliability diagram with a confidence histogram below it.

    Args:
        logits_or_report: A `ReliabilityReport`, or logits / probabilities,
            `(num_samples, C)` or per position `(batch, ..., C)` (then
            `labels` is needed; see `reliability_report`).
        labels, num_bins, activation, mask, ignore_class, sample_weight: As in
            `reliability_report`.
        from_logits: True for logits, False for probabilities; None
            (deprecated) guesses with a `DeprecationWarning`, as
            `reliability_report` does.
        title: Figure title (default: the ECE).
        figsize, dpi: Figure size in inches and resolution of the saved PNG.
        path: Save a PNG here.
    """
    report = logits_or_report
    if not isinstance(report, ReliabilityReport):
        if labels is None:
            raise ValueError("reliability_diagram needs labels unless it is given a ReliabilityReport.")
        report = reliability_report(logits_or_report, labels, num_bins, activation=activation,
                                    from_logits=from_logits, mask=mask, ignore_class=ignore_class,
                                    sample_weight=sample_weight)
    figure = _figure(figsize, dpi)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    edges = report.bin_edges
    width = np.diff(edges)
    filled = report.bin_count > 0
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    top.bar(edges[:-1][filled], report.bin_accuracy[filled], width=width[filled], align="edge",
            edgecolor="black", color="tab:blue", label="accuracy")
    top.bar(edges[:-1][filled], (report.bin_confidence - report.bin_accuracy)[filled], width=width[filled],
            bottom=report.bin_accuracy[filled], align="edge", color="tab:red", alpha=0.3, label="gap")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy",
            title=title or f"ECE {report.ece:.4f}, MCE {report.mce:.4f} ({report.num_samples} samples)")
    top.legend(loc="upper left")
    bottom.bar(edges[:-1], report.bin_count, width=width, align="edge", edgecolor="black", color="gray")
    bottom.set(xlabel="confidence", ylabel="predictions")
    return _finish(figure, path, dpi)


def class_histograms(logits, *, activation: str = "softmax", classes: Optional[Sequence[int]] = None,
                     class_names: Optional[Sequence[str]] = None, bins: int = 30, max_classes: int = 10,
                     mask=None, max_values: int = MAX_VALUES, seed: int = 0,
                     figsize_per_class=(7.0, 1.8), dpi: int = 100, path=None):
    """Histograms of each class's logits (left) and probabilities (right).

    Args:
        logits: `(num_samples, num_classes)` or per-position
            `(batch, ..., num_classes)` logits.
        activation: `"softmax"` or `"sigmoid"`, to compute the probabilities.
        classes: Class indices to plot (default: the first `max_classes`).
        class_names: Names for the row titles.
        bins: Histogram bins.
        mask: Optional `(batch, ...)`, truthy where a position counts (padding
            left out).
        max_values: At most this many logits are drawn, from a uniform sample
            of positions (seeded by `seed`); all of them when there are fewer.
        figsize_per_class, dpi: Size of one row in inches; PNG resolution.
        path: Save a PNG here.

    Example:

    >>> import numpy as np
    >>> pixels = np.random.default_rng(0).normal(size=(2, 64, 64, 3))
    >>> figure = class_histograms(pixels, max_values=3000)       # 1000 of the 8192 pixels
    >>> int(sum(patch.get_height() for patch in figure.axes[0].patches))
    1000
    """
    logits = _sample_positions(logits, activation, mask, max_values, seed)
    probabilities = activate(logits, activation)
    if classes is None:
        classes = range(min(logits.shape[1], max_classes))
    classes = [int(c) for c in classes]
    if not classes or min(classes) < 0 or max(classes) >= logits.shape[1]:
        raise ValueError(f"classes must be indices in [0, {logits.shape[1]}), got {classes}.")
    width, height = figsize_per_class
    figure = _figure((width, height * len(classes)), dpi)
    axes = np.asarray(figure.subplots(len(classes), 2, squeeze=False))
    for row, index in enumerate(classes):
        name = class_names[index] if class_names is not None else f"class {index}"
        axes[row, 0].hist(_finite(logits[:, index]), bins=bins, color="tab:blue")
        axes[row, 0].set_ylabel(name)
        axes[row, 1].hist(probabilities[:, index], bins=bins, range=(0, 1), color="tab:orange")
    axes[0, 0].set_title("logits")
    axes[0, 1].set_title("probabilities")
    return _finish(figure, path, dpi)


def logits_over_epochs(snapshots: Union[str, os.PathLike], *, bins: int = 40, max_values: int = MAX_VALUES,
                       figsize=(7.0, 4.0), dpi: int = 100, path=None):
    """A heat map of the probe's logit histogram per epoch, from `LogitsLogger` snapshots.

    Args:
        snapshots: The snapshot directory (`<log_dir>/keras_logits/snapshots`), holding
            `epoch_0001.npz`, ... written by `LogitsLogger`.
        bins: Histogram bins over the logit range of all epochs.
        max_values: At most this many logits per epoch, a seeded uniform
            sample (snapshots of per-position probes are large).
        figsize, dpi, path: As for the other plots.
    """
    directory = Path(snapshots)
    files = sorted((int(match.group(1)), entry) for entry in directory.glob("epoch_*.npz")
                   if (match := _SNAPSHOT.search(entry.name)))
    if not files:
        raise ValueError(f"No LogitsLogger snapshots (epoch_NNNN.npz) in {directory}; "
                         "train with LogitsLogger(..., snapshots=True) first.")
    epochs, values = [], []
    for epoch, entry in files:
        with np.load(entry, allow_pickle=False) as snapshot:
            values.append(_finite(_sample_values(snapshot["logits"], max_values, seed=epoch)))
        epochs.append(epoch)
    everything = np.concatenate(values)
    low, high = (everything.min(), everything.max()) if everything.size else (0.0, 1.0)
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    density = np.stack([np.histogram(v, edges)[0] / max(v.size, 1) for v in values])
    figure = _figure(figsize, dpi)
    axes = figure.subplots()
    image = axes.imshow(density.T, origin="lower", aspect="auto", cmap="viridis",
                        extent=(epochs[0] - 0.5, epochs[-1] + 0.5, edges[0], edges[-1]))
    axes.set(xlabel="epoch", ylabel="logit", title="probe logits over epochs")
    figure.colorbar(image, ax=axes, label="fraction of logits")
    return _finish(figure, path, dpi)


def save_png(figure, path: Union[str, os.PathLike], *, dpi: int = 100) -> Path:
    """Saves `figure` as a PNG at `path` atomically (never a half-written file)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return atomic_write(path, lambda file: file.write(buffer.getvalue()))


def _figure(figsize, dpi):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            'keras_logits.plots needs matplotlib: pip install "keras-logits[plots]" (or pip install matplotlib).'
        ) from None
    return Figure(figsize=figsize, dpi=dpi, layout="constrained")


def _finish(figure, path, dpi):
    if path is not None:
        save_png(figure, path, dpi=dpi)
    return figure


def _sample_positions(logits, activation: str, mask, max_values: int, seed: int) -> np.ndarray:
    """`(n, C)` float64 rows of a seeded uniform sample of the kept positions, `n * C <= max_values`.

    Rows are chosen before any float64 copy, so a large probe costs only the sample.
    """
    array = np.asarray(logits)
    if array.ndim < 2 or array.shape[-1] == 0:
        return as_logits(array, activation)  # refuses, or reads a 1-D sigmoid vector as one column
    if not max_values >= 1:
        raise ValueError(f"max_values must be a positive integer, got {max_values!r}.")
    rows = array.reshape(-1, array.shape[-1])
    candidates = len(rows)  # an int, not np.arange: 16M positions would cost 128 MB of indices
    if mask is not None:
        kept = _to_positions(np.asarray(mask).astype(bool), array.shape[:-1], "mask", "logits")
        candidates = np.flatnonzero(kept.reshape(-1))
    count = candidates if isinstance(candidates, int) else len(candidates)
    limit = max(1, int(max_values) // rows.shape[1])
    if count <= limit:
        return as_logits(rows if mask is None else rows[candidates], activation)
    chosen = np.sort(np.random.default_rng(seed).choice(candidates, limit, replace=False))
    return as_logits(rows[chosen], activation)


def _sample_values(values, max_values: int, seed: int) -> np.ndarray:
    """At most `max_values` entries of `values` (flattened), a seeded uniform sample."""
    flat = np.asarray(values).reshape(-1)
    if flat.size > max_values:
        flat = flat[np.sort(np.random.default_rng(seed).choice(flat.size, max_values, replace=False))]
    return flat


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype="float64").ravel()
    return values[np.isfinite(values)]

"""LogitsLogger: what the classifier outputs, logged every epoch without a second training pass."""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path
from typing import Optional, Union

import keras
import numpy as np

from keras_logits.calibration import expected_calibration_error
from keras_logits.checks import ModelCheckWarning, check_model
from keras_logits.distribution import (batch_multiple, is_chief, is_distributed, predict_across_processes,
                                       process_count, row_count, take_rows)
from keras_logits.expose_model import LOGITS, PROBABILITIES, ensure_exposed
from keras_logits import scores
from keras_logits.files import atomic_write, remove_stale_temporaries
from keras_logits.tensorboard_events import EventWriter

PROBE_PREFIX = "probe/"


class LogitsLogger(keras.callbacks.Callback):
    """Logs logits and probabilities of a fixed probe set, and the epoch's metrics, every epoch.

    At the end of every `every_n_epochs`-th epoch it runs one compiled
    prediction over `probe` (in the exposed model, so one forward pass gives
    both outputs) and writes:

    - TensorBoard scalars (`log_dir`): the epoch's logs (`loss`,
      `logits/ece`, `val/logits/mean`, ...) and probe summaries
      (`probe/logits/mean`, `probe/logits/ece`, `probe/accuracy`, ...), plus
      histograms `probe/logits` and `probe/probabilities`;
    - CSV rows (`csv_path`): one per epoch, header once; a resumed run
      (`initial_epoch`, `BackupAndRestore`) continues the same file, and the
      rows of epochs it redoes are replaced, not repeated;
    - `.npz` snapshots (`<log_dir>/snapshots/epoch_0003.npz`): the probe's
      logits, probabilities and labels;
    - the probe summaries into the epoch logs, hence into `History`.

    Every file is written atomically (temporary file, then rename). Under
    `MultiWorkerMirroredStrategy` or multi-process JAX only the chief writes.
    The per-step metrics come from `keras_logits.metrics` in `compile`, not
    from this callback, so training keeps Keras' asynchronous dispatch.

    Args:
        probe: `x`, `(x, labels)` or a `tf.data.Dataset` of `x` or `(x, labels)`
            batches. Read once, at the start of training.
        log_dir: Directory for TensorBoard event files and snapshots.
        csv_path: CSV file to write or continue.
        every_n_epochs: Probe every this many epochs.
        histograms: Write TensorBoard histograms of the probe outputs.
        snapshots: Write per-epoch `.npz` snapshots (`True` puts them in
            `<log_dir>/snapshots` or beside `csv_path`; a path chooses the
            directory; `False` writes none).
        stop_on_nonfinite: Stop training when the probe or the epoch's
            `nonfinite` metric saw NaN/inf logits.
        batch_size: Probe prediction batch size. The default predicts a probe of up to
            1024 samples in one call: each call pays a fixed cost (on JAX it gathers
            the whole model state), so fewer, larger calls are cheaper.

    Example:

    >>> import keras, numpy as np, tempfile, keras_logits
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    >>> x, y = np.random.rand(32, 4), np.random.randint(0, 3, 32)
    >>> logger = keras_logits.callbacks.LogitsLogger((x[:8], y[:8]), log_dir=tempfile.mkdtemp())
    >>> history = model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
    >>> len(history.history["probe/logits/ece"])
    2
    """

    def __init__(
        self,
        probe,
        log_dir: Optional[Union[str, os.PathLike]] = None,
        csv_path: Optional[Union[str, os.PathLike]] = None,
        every_n_epochs: int = 1,
        histograms: bool = True,
        snapshots: Union[bool, str, os.PathLike] = True,
        stop_on_nonfinite: bool = False,
        batch_size: int = 1024,
    ):
        super().__init__()
        if int(every_n_epochs) < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}.")
        self.probe = probe
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.csv_path = None if csv_path is None else Path(csv_path)
        self.every_n_epochs = int(every_n_epochs)
        self.histograms = histograms
        self.stop_on_nonfinite = stop_on_nonfinite
        self.batch_size = int(batch_size)
        self.snapshot_dir = self._snapshot_dir(snapshots)
        self.stop_reason: Optional[str] = None
        self._writer = None
        self._rows: list = []
        self._columns: list = []
        self._first_epoch: Optional[int] = None

    def _snapshot_dir(self, snapshots) -> Optional[Path]:
        if snapshots is False or snapshots is None:
            return None
        if snapshots is not True:
            return Path(snapshots)
        if self.log_dir is not None:
            return self.log_dir / "snapshots"
        if self.csv_path is not None:
            return self.csv_path.parent / "snapshots"
        return None

    # ---- set-up: validate everything before the first epoch ---------------------------------

    def on_train_begin(self, logs=None):
        self._exposed, head = ensure_exposed(self.model)
        self._activation = head.activation
        self._x, self._labels = _read_probe(self.probe)
        self._check_probe()
        self._chief = is_chief(self.model)
        if self._chief:
            for finding in check_model(self.model):
                warnings.warn(str(finding), ModelCheckWarning, stacklevel=2)
            for directory in (self.log_dir, self.snapshot_dir, self.csv_path and self.csv_path.parent):
                if directory is not None:
                    _check_writable(Path(directory))
                    remove_stale_temporaries(directory)  # left by a process killed mid-write
            if self.log_dir is not None:
                self._writer = EventWriter(str(self.log_dir))
            if self.csv_path is not None:
                self._columns, self._rows = _read_csv(self.csv_path)
        self._first_epoch = None

    def _check_probe(self):
        expected = [tuple(t.shape[1:]) for t in self._exposed.inputs]
        arrays = self._x if isinstance(self._x, (list, tuple)) else [self._x]
        if isinstance(self._x, dict):
            arrays = list(self._x.values())
        if len(arrays) != len(expected):
            raise ValueError(f"LogitsLogger probe has {len(arrays)} input arrays; the model takes {len(expected)}.")
        for array, shape in zip(arrays, expected):
            found = tuple(array.shape[1:])
            if len(found) != len(shape) or any(s is not None and s != f for s, f in zip(shape, found)):
                raise ValueError(
                    f"LogitsLogger probe inputs have shape {tuple(array.shape)}, but model "
                    f"'{self.model.name}' expects (batch, {', '.join(str(s) for s in shape)}). Pass probe "
                    "samples shaped like the training inputs."
                )
        count = len(arrays[0])
        if count == 0:
            raise ValueError("LogitsLogger probe is empty; pass at least one sample.")
        if self._labels is not None and len(self._labels) != count:
            raise ValueError(
                f"LogitsLogger probe has {count} inputs but {len(self._labels)} labels; pass one label per input."
            )

    # ---- every epoch ------------------------------------------------------------------------

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch is None:
            self._first_epoch = epoch
            # A resumed run redoes epochs from `epoch`: their old rows go, the rest stay.
            self._rows = [row for row in self._rows if int(float(row["epoch"])) < epoch]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if (epoch + 1) % self.every_n_epochs != 0:
            return
        logits, probabilities = self._predict_probe()
        summary = probe_summary(logits, self._labels, self._activation)
        epoch_values = {key: float(value) for key, value in logs.items() if np.ndim(value) == 0}
        logs.update({PROBE_PREFIX + key: value for key, value in summary.items()})
        if self._chief:
            self._write(epoch, epoch_values, summary, logits, probabilities)
        self._maybe_stop(epoch, summary, epoch_values)

    def _predict_probe(self):
        """One compiled forward pass over the probe, in fixed-size chunks.

        `predict_on_batch` per chunk skips the data-adapter set-up `predict`
        pays on every call; the chunk shapes repeat each epoch, so nothing is
        retraced after the first. Distributed models use `predict`, which
        splits batches over replicas.
        """
        count = row_count(self._x)
        if process_count() > 1:
            outputs = predict_across_processes(self._exposed, self._x, self.batch_size)
            return outputs[LOGITS], outputs[PROBABILITIES]
        if is_distributed(self._exposed):
            # Keras' JAX distribution needs batches divisible by the devices on the batch axis:
            # pad with zeros, then drop the padded rows' outputs.
            multiple = batch_multiple()
            padded = take_rows(self._x, 0, count, pad_to=count + -count % multiple)
            batch_size = -(-self.batch_size // multiple) * multiple
            outputs = self._exposed.predict(padded, batch_size=batch_size, verbose=0)
            return np.asarray(outputs[LOGITS])[:count], np.asarray(outputs[PROBABILITIES])[:count]
        logits, probabilities = [], []
        for start in range(0, count, self.batch_size):
            chunk = take_rows(self._x, start, start + self.batch_size)
            outputs = self._exposed.predict_on_batch(chunk)
            logits.append(np.asarray(outputs[LOGITS]))
            probabilities.append(np.asarray(outputs[PROBABILITIES]))
        return np.concatenate(logits), np.concatenate(probabilities)

    def _write(self, epoch, epoch_values, summary, logits, probabilities):
        if self._writer is not None:
            scalars = {tag_for(key): value for key, value in epoch_values.items()}
            scalars.update({PROBE_PREFIX + key: value for key, value in summary.items()})
            histograms = {}
            if self.histograms:
                histograms = {PROBE_PREFIX + LOGITS: logits, PROBE_PREFIX + PROBABILITIES: probabilities}
            self._writer.write(step=epoch, scalars=scalars, histograms=histograms)
        if self.csv_path is not None:
            row = {"epoch": epoch, **epoch_values, **{PROBE_PREFIX + k: v for k, v in summary.items()}}
            self._columns += [key for key in row if key not in self._columns]
            self._rows.append(row)
            atomic_write(self.csv_path, lambda f: f.write(_csv_text(self._columns, self._rows)), binary=False)
        if self.snapshot_dir is not None:
            arrays = {"logits": logits, "probabilities": probabilities, "epoch": np.asarray(epoch)}
            if self._labels is not None:
                arrays["labels"] = self._labels
            atomic_write(self.snapshot_dir / f"epoch_{epoch:04d}.npz", lambda f: np.savez(f, **arrays))

    def _maybe_stop(self, epoch, summary, epoch_values):
        if not self.stop_on_nonfinite:
            return
        in_probe = int(summary["logits/nonfinite"])
        in_steps = int(sum(v for k, v in epoch_values.items() if k.endswith("nonfinite") and np.isfinite(v)))
        if in_probe or in_steps:
            self.stop_reason = (
                f"LogitsLogger stopped training after epoch {epoch}: {in_probe} non-finite logits on the "
                f"probe, {in_steps} in the epoch's steps. Lower the learning rate or check the inputs."
            )
            warnings.warn(self.stop_reason, RuntimeWarning, stacklevel=2)
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def probe_summary(logits: np.ndarray, labels: Optional[np.ndarray], activation: str, *,
                  num_bins: int = 15) -> dict:
    """Summaries of a probe's logits (and labels), keyed like the in-step metrics: `logits/mean`, ...

    The same definitions as `keras_logits.metrics.default_metrics` (a test
    holds the two equal), computed in NumPy on the host: the probe is already
    there, and eager Keras metrics would cost more than the probe's forward
    pass on small models. `ece`, `brier` and `accuracy` need labels.
    """
    logits = np.asarray(logits, dtype="float64").reshape(len(logits), -1)
    summary = {"mean": logits.mean(), "std": logits.std(), "nonfinite": float(np.sum(~np.isfinite(logits)))}
    # Log-probabilities once: probabilities, confidence and entropy share them (10^5-class probes are large).
    if activation == "softmax" and logits.shape[1] > 1:
        log_p = scores.log_softmax(logits)
        p = np.exp(log_p)
        confidence = p.max(axis=1)
        summary["margin"] = np.mean(scores.margin(logits))
        summary["confidence"] = np.mean(confidence)
        summary["entropy"] = np.mean(-(p * log_p).sum(axis=1))
        if labels is not None:
            classes = _class_labels(labels, logits)
            correct = p.argmax(axis=1) == classes
            summary["ece"] = expected_calibration_error(confidence, correct, num_bins)
            # sum_c (p_c - y_c)^2 = sum_c p_c^2 - 2 p_label + 1, without a (classes x classes) eye.
            p_label = p[np.arange(len(classes)), classes]
            summary["brier"] = np.mean((p**2).sum(axis=1) - 2.0 * p_label + 1.0)
            summary["accuracy"] = np.mean(correct)
    else:
        log_p, log_q = scores.log_sigmoid(logits), scores.log_sigmoid(-logits)
        p, q = np.exp(log_p), np.exp(log_q)
        confidence = np.maximum(p, q)
        summary["margin"] = np.mean(np.abs(logits))
        summary["confidence"] = np.mean(confidence)
        summary["entropy"] = np.mean(-(p * log_p + q * log_q))
        if labels is not None:
            targets = np.asarray(labels, dtype="float64").reshape(logits.shape)
            correct = (p >= 0.5) == (targets >= 0.5)
            summary["ece"] = expected_calibration_error(confidence.ravel(), correct.ravel(), num_bins)
            summary["brier"] = np.mean((p - targets) ** 2)
            summary["accuracy"] = np.mean(correct)
    return {(key if key == "accuracy" else f"{LOGITS}/{key}"): float(value) for key, value in summary.items()}


def tag_for(key: str) -> str:
    """TensorBoard tag of a logs key: `logits_ece` -> `logits/ece`, `val_logits_ece` -> `val/logits/ece`."""
    prefix = ""
    if key.startswith("val_"):
        prefix, key = "val/", key[len("val_"):]
    for output in (LOGITS, PROBABILITIES):
        if key.startswith(output + "_"):
            return f"{prefix}{output}/{key[len(output) + 1:]}"
    return prefix + key


def _class_labels(labels, logits):
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == logits.shape[-1] and logits.shape[-1] > 1:
        return labels.argmax(-1)
    return labels.reshape(-1).astype("int64")


def _read_probe(probe):
    """Returns (x, labels or None) as NumPy, reading a tf.data.Dataset once."""
    if hasattr(probe, "as_numpy_iterator"):
        xs, ys = [], []
        for element in probe.as_numpy_iterator():
            if isinstance(element, tuple):
                xs.append(element[0])
                if len(element) > 1:
                    ys.append(element[1])
            else:
                xs.append(element)
        if not xs:
            raise ValueError("LogitsLogger probe dataset is empty; pass at least one batch.")
        x = np.concatenate(xs) if not isinstance(xs[0], dict) else {
            key: np.concatenate([batch[key] for batch in xs]) for key in xs[0]}
        return x, (np.concatenate(ys) if ys else None)
    if isinstance(probe, tuple) and len(probe) == 2:
        return _as_arrays(probe[0]), np.asarray(probe[1])
    return _as_arrays(probe), None


def _as_arrays(x):
    if isinstance(x, dict):
        return {key: np.asarray(value) for key, value in x.items()}
    if isinstance(x, list):
        return [np.asarray(value) for value in x]
    return np.asarray(x)


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe_file = directory / f".keras-logits-write-check-{os.getpid()}"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as error:
        raise PermissionError(
            f"LogitsLogger cannot write to '{directory}' ({error.strerror or error}). Pass a directory "
            "you can write to."
        ) from None


def _read_csv(path: Path):
    if not path.exists() or path.stat().st_size == 0:
        return [], []
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def _csv_text(columns, rows) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()

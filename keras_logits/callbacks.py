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

from keras_logits._callback_list import calling_callback_list, compiled_metric_directions, set_monitor_directions
from keras_logits.checks import ModelCheckWarning, check_model
from keras_logits._distribution import (batch_multiple, is_chief, is_distributed, predict_across_processes,
                                       process_count, row_count, take_rows)
from keras_logits._expose import LOGITS, PROBABILITIES, ensure_exposed
from keras_logits._files import atomic_write, remove_stale_temporaries
from keras_logits._graph import model_inputs, model_outputs
from keras_logits._probe import check_labels, model_feed, probe_arrays, read_probe
from keras_logits import _snapshots as snapshot_files
from keras_logits.statistics import summarize
from keras_logits._tensorboard_events import EventWriter

PROBE_PREFIX = "probe_"
RUN_DIRECTORY = "keras_logits"
RUN_COLUMN = "run"
MASK = "mask"
# The better direction of the probe values that have one, for Keras' `mode="auto"`.
DIRECTIONS = {"ece": "min", "brier": "min", "nonfinite": "min", "accuracy": "max"}


def probe_key(statistic: str) -> str:
    """The one name of a probe statistic in History, CSV, TensorBoard and `monitor=`: `probe_logits_ece`.

    Example:

    >>> probe_key("ece")
    'probe_logits_ece'
    """
    return f"{PROBE_PREFIX}{LOGITS}_{statistic}"


class LogitsLogger(keras.callbacks.Callback):
    """Logs logits and probabilities of a fixed probe set, and the epoch's metrics, every epoch.

    At the end of the first epoch of a `fit` and of every `every_n_epochs`-th
    epoch it runs one compiled prediction over `probe` (in the exposed model,
    so one forward pass gives both outputs). Every value has one name, the
    name Keras' `History` gives it, used everywhere this callback writes it
    and accepted by `monitor=`: `loss`, `logits_ece`, `val_logits_ece` (the
    in-step metrics of `keras_logits.metrics`) and the probe summaries
    `probe_logits_mean`, `probe_logits_ece`, `probe_logits_accuracy`, ...
    (`probe_key(name)`). It writes:

    - the probe summaries into the epoch logs, hence into `History` and every
      other callback, listed before or after this one (it moves its probe to
      the front of Keras' callback list; `mode="auto"` of `EarlyStopping`,
      `ModelCheckpoint` and `ReduceLROnPlateau` works for `probe_logits_ece`,
      `_brier`, `_nonfinite` (lower is better) and `_accuracy` (higher), and
      for the in-step metrics of one output (`val_logits_ece`) whose metric
      declares its direction, which Keras alone cannot match on a
      multi-output model; started outside a Keras `CallbackList` (driven by
      hand, wrapped in another callback) it warns once, and only the
      callbacks after it see the probe values);
      on epochs without a probe (`every_n_epochs > 1`) they are NaN, so
      Keras' `CSVLogger` has their columns from the first epoch and monitoring
      callbacks see no improvement (their `patience` counts epochs, not probes);
    - TensorBoard scalars and histograms (`probe_logits`,
      `probe_probabilities`, from at most `max_histogram_values` values) in
      `<log_dir>/keras_logits`, a run of its own beside Keras' `TensorBoard`
      callback's `train`/`validation`; with that callback on the same
      `log_dir`, only the probe values are written (Keras' callback has the
      rest as `epoch_loss`, ...). A `fit` starting at epoch 0 into a `log_dir`
      that already has a run starts a new run `keras_logits_2`, ...; a `fit`
      that resumes (`initial_epoch`, `BackupAndRestore`) continues the
      latest run, with the epoch as the step;
    - CSV rows (`csv_path`): one per epoch, in a `run` column the run's name
      (`self.run`): the TensorBoard run directory (`keras_logits`,
      `keras_logits_2`, ...), or without `log_dir` the same names counted in
      the CSV. A `fit` from epoch 0 onto an existing CSV adds its rows under a
      new run and keeps every earlier row; a resumed run (`initial_epoch`,
      `BackupAndRestore`) continues its own run, and the rows of epochs it
      redoes are replaced, not repeated. A CSV from before the `run` column
      is read as run `keras_logits`;
    - `.npz` snapshots `epoch_0003.npz` (see `keras_logits._snapshots`): the
      probe's logits (probabilities are their softmax/sigmoid), labels and,
      for per-position heads, the mask, in `<run>/snapshots` or beside
      `csv_path` (`<csv name>_snapshots/`). A snapshot costs `P * C *
      itemsize` bytes per epoch (`P` positions, `C` classes, itemsize 4, or 2
      with `snapshot_dtype="float16"`) plus the labels: 1.4 GB for 64
      512x512 images with 21 classes in float32, 11 MB with
      `max_snapshot_bytes=2**20 * 10`, which stores the same random sample
      of positions every epoch. `keep_last`/`keep_every` delete old ones.
      A directory shared by runs (beside `csv_path`, or `snapshots=path`)
      is not emptied by a new `fit` from epoch 0: that run writes into
      `<directory>_2`, ...; a resumed run continues the latest.

    The model may be an original classifier, an exposed model, a
    `logits_model` (its activation is recorded), a model that outputs
    logits (pass `activation=`), or a `keras.distillation.Distiller`: then
    its student is logged (probe logits and probabilities; the in-step
    metrics are those compiled on the Distiller, computed on the student's
    outputs), and a student it cannot expose is refused at train begin with
    what to pass.

    Per-position heads (segmentation `(batch, H, W, C)`, token tagging
    `(batch, T, C)`) are summarised over all positions; the output's Keras
    mask (e.g. `Embedding(mask_zero=True)`) and `ignore_class` leave
    positions out. Labels are `(batch, ...)` class ids or `(batch, ...,
    classes)` one-hot/multi-hot.

    Every file is written atomically (temporary file, then rename) with the
    permissions of a plain `open`. Under `MultiWorkerMirroredStrategy` or
    multi-process JAX only the chief writes.

    Args:
        probe: `x`, `(x, labels)` or a `tf.data.Dataset` of `x` or `(x, labels)`
            batches; a dict `x` is keyed by input name. Read once, at the start of training.
        log_dir: Directory for TensorBoard runs and snapshots.
        csv_path: CSV file to write or continue.
        every_n_epochs: Probe every this many epochs (and the first epoch of each `fit`).
        histograms: Write TensorBoard histograms of the probe outputs.
        snapshots: Write `.npz` snapshots (`True` in the default place, a path
            chooses the directory, `False` writes none).
        stop_on_nonfinite: Stop training when the probe or the epoch's
            `nonfinite` metric saw NaN/inf logits.
        batch_size: Probe prediction batch size. The default predicts a probe of up to
            1024 samples in one call: each call pays a fixed cost (on JAX it gathers
            the whole model state), so fewer, larger calls are cheaper.
        head: Output name of the classification head on a model with several.
        activation: `"softmax"` or `"sigmoid"` for a model that outputs logits
            nobody recorded (a Dense without activation at the end, a KerasHub
            task built with `activation=None`). A model that applies its
            activation, an exposed model and a `logits_model` need none; a
            model that applies one refuses it.
        ignore_class: A label value (e.g. 255 "void" pixels) whose positions are left out.
        snapshot_dtype: `"float32"` or `"float16"` logits in snapshots.
        compress_snapshots: Write snapshots with `np.savez_compressed`.
        max_snapshot_bytes: Store at most about this many bytes of logits per snapshot
            (a fixed random sample of positions, indices in `positions`).
        keep_last: Keep only the last this many snapshots (with `keep_every`: also those).
        keep_every: Keep the snapshots of every this-many-th epoch.
        max_histogram_values: Histograms from at most this many values (a fixed sample).

    Example:

    >>> import keras, numpy as np, tempfile, keras_logits
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    >>> x, y = np.random.rand(32, 4), np.random.randint(0, 3, 32)
    >>> logger = keras_logits.callbacks.LogitsLogger((x[:8], y[:8]), log_dir=tempfile.mkdtemp())
    >>> history = model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
    >>> len(history.history["probe_logits_ece"])
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
        *,
        head: Optional[str] = None,
        activation: Optional[str] = None,
        ignore_class: Optional[int] = None,
        snapshot_dtype: str = "float32",
        compress_snapshots: bool = False,
        max_snapshot_bytes: Optional[int] = None,
        keep_last: Optional[int] = None,
        keep_every: Optional[int] = None,
        max_histogram_values: int = 1_000_000,
    ):
        super().__init__()
        for name, value in (("every_n_epochs", every_n_epochs), ("batch_size", batch_size),
                            ("max_histogram_values", max_histogram_values), ("keep_last", keep_last),
                            ("keep_every", keep_every), ("max_snapshot_bytes", max_snapshot_bytes)):
            if value is not None and int(value) < 1:
                raise ValueError(f"LogitsLogger {name} must be >= 1, got {value}.")
        if snapshot_dtype not in ("float32", "float16"):
            raise ValueError(f"LogitsLogger snapshot_dtype must be 'float32' or 'float16', got {snapshot_dtype!r}.")
        self.probe = probe
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.csv_path = None if csv_path is None else Path(csv_path)
        self.every_n_epochs = int(every_n_epochs)
        self.histograms = histograms
        self.snapshots = snapshots
        self.stop_on_nonfinite = stop_on_nonfinite
        self.batch_size = int(batch_size)
        self.head = head
        self.activation = activation
        self.ignore_class = ignore_class
        self.snapshot_dtype = snapshot_dtype
        self.compress_snapshots = compress_snapshots
        self.max_snapshot_bytes = max_snapshot_bytes
        self.keep_last = keep_last
        self.keep_every = keep_every
        self.max_histogram_values = int(max_histogram_values)
        self.run_dir: Optional[Path] = None
        self.run: Optional[str] = None
        self.snapshot_dir: Optional[Path] = None
        self.stop_reason: Optional[str] = None
        self._writer = None
        self._rows: list = []
        self._columns: list = []
        self._first_epoch: Optional[int] = None
        self._callback_list = None
        self._front = None

    # ---- set-up: validate everything before the first epoch ---------------------------------

    def on_train_begin(self, logs=None):
        callback_list = calling_callback_list(self)
        self._classifier, self._exposed, head = self._expose_logged_model(self.model)
        self._activation = head.activation
        self._x, self._labels = read_probe(self.probe)
        arrays = probe_arrays(self._x, self._exposed)
        # Fed as the model is called, not by the probe's keys: Keras on TensorFlow and torch refuses a dict for
        # a model built from a list of unnamed inputs under any keys.
        self._x = model_feed(arrays, self._exposed)
        self._count = len(arrays[0])
        check_labels(self._labels, self._count)
        self._probe_model = self._build_probe_model(head)
        dummy = np.zeros((1, 2 if self._activation == "softmax" else 1))
        self._statistics = list(summarize(dummy, None if self._labels is None else [0], activation=self._activation))
        self._check_labels_fit()
        self._chief = is_chief(self.model)
        self._keras_tensorboard = False
        self._join_callback_list(callback_list)
        if self._chief:
            for finding in check_model(self.model):
                warnings.warn(str(finding), ModelCheckWarning, stacklevel=2)
            snapshot_parent = self._snapshot_parent()
            for directory in (self.log_dir, snapshot_parent, self.csv_path and self.csv_path.parent):
                if directory is not None:
                    _check_writable(Path(directory))
                    remove_stale_temporaries(directory)  # left by a process killed mid-write
            if self.csv_path is not None:
                self._columns, self._rows = _read_csv(self.csv_path)
        self._first_epoch = None
        self._probed = None

    def _expose_logged_model(self, model) -> tuple:
        """`(classifier, its exposed model, head)`: `model`, or the student of a `keras.distillation.Distiller`.

        A Distiller's `call` is its student's; its teacher is frozen. The
        probe runs the student (exposed: it shares the student's weights).
        """
        if not _is_distiller(model):
            return (model, *ensure_exposed(model, head=self.head, activation=self.activation))
        student = model.student
        try:
            return (student, *ensure_exposed(student, head=self.head, activation=self.activation))
        except (ValueError, TypeError) as error:
            raise type(error)(
                f"LogitsLogger on Distiller '{model.name}' logs its student '{student.name}', which it cannot "
                f"expose: {error} (For a student that outputs logits, build it with "
                "keras_logits.logits_model(classifier), which records its activation, or pass "
                "LogitsLogger(activation='softmax' or 'sigmoid').)"
            ) from None

    def _build_probe_model(self, head):
        """The exposed model with the logits' Keras mask as a third output, when the head has one.

        Built once: the mask comes from the same forward pass as the logits.
        """
        outputs = model_outputs(self._exposed)
        logits = outputs[LOGITS]
        axis = head.axis if head.axis is not None else -1
        if axis not in (-1, len(logits.shape) - 1):
            raise ValueError(
                f"LogitsLogger: the head of model '{self.model.name}' normalises over axis {axis}, not the last "
                "axis; put the classes last (e.g. data_format='channels_last') to log it."
            )
        mask = getattr(logits, "_keras_mask", None)
        if mask is None:
            mask = getattr(outputs[PROBABILITIES], "_keras_mask", None)
        if mask is None and self._classifier is not self._exposed:
            # An exposed head that drops the mask: the original output's mask, computed from the same inputs.
            original = model_outputs(self._classifier).get(head.output_name)
            mask = getattr(original, "_keras_mask", None)
            if mask is not None and not all(a is b for a, b in zip(self._classifier.inputs, self._exposed.inputs)):
                warnings.warn(f"LogitsLogger cannot compute the Keras mask of model '{self.model.name}' beside the "
                              "logits; masked (padding) positions count in the probe summaries.", stacklevel=3)
                mask = None
        if mask is None or len(mask.shape) >= len(logits.shape) > 1:
            # No mask, or one over the classes (a pointer head): its logits are already masked, no position is.
            return self._exposed
        return keras.Model(model_inputs(self._exposed),
                           {LOGITS: logits, PROBABILITIES: outputs[PROBABILITIES], MASK: mask})

    def _check_labels_fit(self):
        """Labels must be `(batch, positions...)` ids or `(batch, positions..., classes)`."""
        if self._labels is None:
            return
        logits_shape = tuple(model_outputs(self._exposed)[LOGITS].shape[1:])
        found = tuple(self._labels.shape[1:])
        if found[-1:] == (1,) and found[:-1] == logits_shape[:-1] and logits_shape[-1] != 1:
            found = found[:-1]
        fits = any(len(found) == len(want) and all(w is None or w == f for w, f in zip(want, found))
                   for want in (logits_shape, logits_shape[:-1]))
        if fits and found == logits_shape[:-1] and self._activation == "softmax" and logits_shape[-1] != 1:
            self._check_class_ids(logits_shape[-1])
        if not fits:
            raise ValueError(
                f"LogitsLogger probe labels have shape {tuple(self._labels.shape)}, but the logits of model "
                f"'{self.model.name}' are (batch, {', '.join(str(s) for s in logits_shape)}); pass labels "
                f"shaped (batch, {', '.join(str(s) for s in logits_shape[:-1]) or ''}) (class ids) or like "
                "the logits (one-hot / multi-hot)."
                .replace("(batch, )", "(batch,)")
            )

    def _check_class_ids(self, classes: int):
        """Sparse labels must be class ids in range where they count, checked before any epoch."""
        ids = self._labels if self.ignore_class is None else self._labels[self._labels != self.ignore_class]
        if ids.size and (np.any(ids != np.round(ids)) or ids.min() < 0 or ids.max() >= classes):
            hint = (f" If {int(ids.max())} marks positions to skip (e.g. 255 'void' pixels), pass "
                    f"ignore_class={int(ids.max())}." if ids.max() >= classes and self.ignore_class is None else "")
            raise ValueError(f"LogitsLogger probe labels must be class ids in [0, {classes}); got values from "
                             f"{ids.min()} to {ids.max()}.{hint}")

    def _snapshot_parent(self) -> Optional[Path]:
        if self.snapshots is False or self.snapshots is None:
            return None
        if self.snapshots is not True:
            return Path(self.snapshots)
        if self.log_dir is not None:
            return self.log_dir
        if self.csv_path is not None:
            return self.csv_path.parent
        return None

    def _join_callback_list(self, callback_list):
        """Puts a probe step at the front of Keras' callback list, so every callback sees the probe values.

        Keras runs callbacks in list order with one shared `logs` dict, and has
        no hook between the last step and the first `on_epoch_end`. The list
        object is replaced, not changed, so the loop now running continues
        unaffected. Fallback: called from no `CallbackList` (a hand-written
        loop, a wrapping callback, an interpreter without frame access), the
        probe runs at this callback's own `on_epoch_end`; callbacks that run
        before it do not see the probe values, which one warning at train
        begin says.
        """
        if callback_list is None:
            self._callback_list = None
            warnings.warn(
                "LogitsLogger was not started by a Keras CallbackList (fit/evaluate's), so it cannot run its probe "
                "before the other callbacks: those that run before it at epoch end (an EarlyStopping, "
                "ModelCheckpoint, CSVLogger, ...) do not see the probe_logits_* values. Run it before them.",
                RuntimeWarning, stacklevel=3)
            return
        self._callback_list = callback_list
        self._front = _ProbeFirst(self)
        callback_list.callbacks = [self._front] + [c for c in callback_list.callbacks
                                                   if not isinstance(c, _ProbeFirst)]
        self._set_monitor_directions()
        for callback in callback_list.callbacks:
            if (isinstance(callback, keras.callbacks.TensorBoard) and self.log_dir is not None
                    and Path(callback.log_dir).resolve() == self.log_dir.resolve()):
                self._keras_tensorboard = True

    def _set_monitor_directions(self):
        """Gives every `mode="auto"` monitoring callback in the list the direction of the value it watches."""
        if self._callback_list is None:
            return
        directions = {**compiled_metric_directions(self.model),
                      **{probe_key(statistic): mode for statistic, mode in DIRECTIONS.items()}}
        set_monitor_directions(self._callback_list.callbacks, directions)

    # ---- every epoch ------------------------------------------------------------------------

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch is not None:
            return
        self._first_epoch = epoch
        if not self._chief:
            return
        if self.log_dir is not None:
            self.run_dir = _run_directory(self.log_dir / RUN_DIRECTORY, epoch, _has_events)
            self._writer = EventWriter(str(self.run_dir))
        self.run = self.run_dir.name if self.run_dir is not None else _csv_run(self._rows, epoch)
        # A resumed run redoes epochs from `epoch`: its old rows of those go; every other run's rows stay.
        self._rows = [row for row in self._rows
                      if epoch == 0 or row[RUN_COLUMN] != self.run or int(float(row["epoch"])) < epoch]
        parent = self._snapshot_parent()
        if parent is not None:
            if self.snapshots is True and self.run_dir is not None:
                self.snapshot_dir = self.run_dir / "snapshots"
            else:  # a directory shared by runs: a new run gets `<dir>_2`, ... rather than deleting the last's
                base = parent if self.snapshots is not True else parent / f"{self.csv_path.stem}_snapshots"
                self.snapshot_dir = _run_directory(base, epoch, lambda d: bool(snapshot_files.snapshot_epochs(d)))
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            snapshot_files.prune(self.snapshot_dir, from_epoch=epoch)

    def _should_probe(self, epoch) -> bool:
        return epoch == self._first_epoch or (epoch + 1) % self.every_n_epochs == 0

    def _probe(self, epoch, logs):
        """Predicts the probe once per epoch (the first of the front step and this callback to run)."""
        if self._probed is not None and self._probed[0] == epoch:
            return self._probed[1]
        result = None
        if self._should_probe(epoch):
            outputs = self._predict_probe()
            summary = probe_summary(outputs[LOGITS], self._labels, self._activation, mask=outputs.get(MASK),
                                    ignore_class=self.ignore_class)
            result = (outputs, summary)
            if logs is not None:
                logs.update({probe_key(k): v for k, v in summary.items()})
        elif logs is not None:
            # NaN, not absent: Keras' CSVLogger fixes its columns at the first epoch, and a monitoring
            # callback treats NaN as no improvement (absent, ModelCheckpoint(save_best_only) would save).
            logs.update({probe_key(k): float("nan") for k in self._statistics})
        self._probed = (epoch, result)
        return result

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self._first_epoch is None:
            self.on_epoch_begin(epoch)
        result = self._probe(epoch, logs)
        values = {key: float(value) for key, value in logs.items() if np.ndim(value) == 0}
        if self._chief:
            self._write(epoch, values, result)
        if result is not None:
            self._maybe_stop(epoch, result[1], values)

    def _predict_probe(self) -> dict:
        """One compiled forward pass over the probe, in fixed-size chunks.

        `predict_on_batch` per chunk skips the data-adapter set-up `predict`
        pays on every call; the chunk shapes repeat each epoch, so nothing is
        retraced after the first. Distributed models use `predict`, which
        splits batches over replicas.
        """
        count = self._count
        model = self._probe_model
        if process_count() > 1:
            return predict_across_processes(model, self._x, self.batch_size)
        if is_distributed(model):
            # Keras' JAX distribution needs batches divisible by the devices on the batch axis:
            # pad with zeros, then drop the padded rows' outputs.
            multiple = batch_multiple()
            padded = take_rows(self._x, 0, count, pad_to=count + -count % multiple)
            batch_size = -(-self.batch_size // multiple) * multiple
            outputs = model.predict(padded, batch_size=batch_size, verbose=0)
            return {key: np.asarray(value)[:count] for key, value in outputs.items()}
        chunks = []
        for start in range(0, count, self.batch_size):
            outputs = model.predict_on_batch(take_rows(self._x, start, start + self.batch_size))
            chunks.append({key: np.asarray(value) for key, value in outputs.items()})
        return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}

    def _write(self, epoch, values, result):
        if result is None:  # no probe this epoch: no NaN points in TensorBoard
            values = {key: value for key, value in values.items() if not key.startswith(PROBE_PREFIX)}
        probe_values = {key: value for key, value in values.items() if key.startswith(PROBE_PREFIX)}
        if self._writer is not None:
            # Keras' TensorBoard callback on the same log_dir already has the epoch's logs.
            scalars = probe_values if self._keras_tensorboard else values
            histograms = {}
            if self.histograms and result is not None:
                sample = self._histogram_sample(result[0])
                histograms = {PROBE_PREFIX + LOGITS: sample[0], PROBE_PREFIX + PROBABILITIES: sample[1]}
            self._writer.write(step=epoch, scalars=scalars, histograms=histograms)
        if self.csv_path is not None:
            row = {"epoch": epoch, RUN_COLUMN: self.run, **values}
            self._columns += [key for key in row if key not in self._columns]
            self._rows.append(row)
            atomic_write(self.csv_path, lambda f: f.write(_csv_text(self._columns, self._rows)), binary=False)
        if self.snapshot_dir is not None and result is not None:
            self._write_snapshot(epoch, result[0])

    def _histogram_sample(self, outputs):
        """Logits and probabilities of the positions that count, at most `max_histogram_values` values.

        A fixed sample of positions (the same every epoch), so a 1.4 GB segmentation probe costs a
        bounded histogram; masked and `ignore_class` positions are left out, as in the summaries.
        """
        classes = outputs[LOGITS].shape[-1] if outputs[LOGITS].ndim > 1 else 1
        logits = outputs[LOGITS].reshape(-1, classes)
        probabilities = outputs[PROBABILITIES].reshape(-1, classes)
        keep = np.ones(len(logits), dtype=bool)
        if outputs.get(MASK) is not None:
            keep &= np.asarray(outputs[MASK]).reshape(-1).astype(bool)
        if self.ignore_class is not None and self._labels is not None and self._labels.size == len(logits):
            keep &= self._labels.reshape(-1) != self.ignore_class
        rows = np.flatnonzero(keep)
        limit = max(1, self.max_histogram_values // classes)
        if len(rows) > limit:
            rows = np.sort(np.random.default_rng(0).choice(rows, size=limit, replace=False))
        elif len(rows) == len(logits):
            return logits, probabilities
        return logits[rows], probabilities[rows]

    def _write_snapshot(self, epoch, outputs):
        logits = outputs[LOGITS]
        classes = logits.shape[-1]
        flat = logits.reshape(-1, classes)
        itemsize = np.dtype(self.snapshot_dtype).itemsize
        chosen = snapshot_files.position_sample(len(flat), classes * itemsize, self.max_snapshot_bytes)
        arrays = {"epoch": np.asarray(epoch), "activation": np.asarray(self._activation)}
        labels = self._labels
        mask = outputs.get(MASK)
        if chosen is None:
            arrays["logits"] = logits.astype(self.snapshot_dtype)
        else:
            arrays["logits"] = flat[chosen].astype(self.snapshot_dtype)
            arrays["positions"] = chosen
            if labels is not None:
                labels = _per_position(labels, flat.shape[0], classes)[chosen]
            if mask is not None:
                mask = np.asarray(mask).reshape(-1)[chosen]
        if labels is not None:
            arrays["labels"] = labels
        if mask is not None:
            arrays[MASK] = np.asarray(mask, dtype=bool)
        snapshot_files.write_snapshot(self.snapshot_dir / snapshot_files.snapshot_name(epoch), arrays,
                                      compress=self.compress_snapshots)
        snapshot_files.prune(self.snapshot_dir, keep_last=self.keep_last, keep_every=self.keep_every)

    def _maybe_stop(self, epoch, summary, epoch_values):
        if not self.stop_on_nonfinite:
            return
        in_probe = int(summary["nonfinite"])
        in_steps = int(sum(v for k, v in epoch_values.items()
                           if k.endswith("nonfinite") and not k.startswith(PROBE_PREFIX) and np.isfinite(v)))
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
        if self._callback_list is not None:
            # A CallbackList passed to fit() by the user outlives this fit: leave it as it was.
            self._callback_list.callbacks = [c for c in self._callback_list.callbacks if c is not self._front]
            self._callback_list = None


class _ProbeFirst(keras.callbacks.Callback):
    """First in Keras' callback list: puts the probe values into the epoch logs before any callback reads them."""

    def __init__(self, logger: LogitsLogger):
        super().__init__()
        self._logger = logger

    def on_epoch_end(self, epoch, logs=None):
        if self._logger._first_epoch is None:
            self._logger.on_epoch_begin(epoch)
        # Compiled metrics are built by the first step (on torch after on_train_begin): read their directions
        # now, before any monitoring callback sets its own on its first epoch end.
        self._logger._set_monitor_directions()
        self._logger._probe(epoch, logs)


def _is_distiller(model) -> bool:
    distiller = getattr(getattr(keras, "distillation", None), "Distiller", None)
    return distiller is not None and isinstance(model, distiller)




def _run_directory(base: Path, first_epoch: int, has_run) -> Path:
    """`base`, or the latest `base_N` to resume, or a new one for a fit from epoch 0 when the latest has a run."""
    runs = [base]
    number = 2
    while base.with_name(f"{base.name}_{number}").exists():
        runs.append(base.with_name(f"{base.name}_{number}"))
        number += 1
    latest = runs[-1]
    if first_epoch > 0 or not has_run(latest):
        return latest
    return base.with_name(f"{base.name}_{number}")


def _has_events(directory: Path) -> bool:
    return directory.is_dir() and any(p.name.startswith("events.out.tfevents") for p in directory.iterdir())


def _run_number(name: str) -> int:
    suffix = name[len(RUN_DIRECTORY) + 1:]
    return int(suffix) if name.startswith(RUN_DIRECTORY + "_") and suffix.isdigit() else 1


def _csv_run(rows: list, first_epoch: int) -> str:
    """The run name of a CSV without TensorBoard runs: the latest run's to resume, else a new one, named alike."""
    if not rows:
        return RUN_DIRECTORY
    if first_epoch > 0:
        return rows[-1][RUN_COLUMN]
    return f"{RUN_DIRECTORY}_{max(_run_number(row[RUN_COLUMN]) for row in rows) + 1}"


def _per_position(labels, positions: int, classes: int) -> np.ndarray:
    """Labels as one row per position: `(P,)` class ids or `(P, classes)`, to store beside sampled logits."""
    labels = np.asarray(labels)
    if labels.size == positions * classes and classes > 1:
        return labels.reshape(positions, classes)
    return labels.reshape(positions)


def probe_summary(logits: np.ndarray, labels: Optional[np.ndarray], activation: str, *, mask=None,
                  ignore_class: Optional[int] = None, num_bins: int = 15) -> dict:
    """Summaries of a probe's logits (and labels), keyed by statistic: `mean`, `ece`, `accuracy`, ...

    `keras_logits.statistics.summarize`: the definitions of the in-step
    metrics (a test holds the two equal), computed in NumPy on the host, over
    every position (all axes but the last); `mask` (False: padding) and labels
    equal to `ignore_class` leave positions out. `ece`, `brier` and
    `accuracy` need labels.

    Example:

    >>> import numpy as np
    >>> probe_summary(np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([0, 0]), "softmax")["accuracy"]
    0.5
    """
    return summarize(logits, labels, activation=activation, mask=mask, ignore_class=ignore_class,
                     num_bins=num_bins)


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
        rows = list(reader)
    columns = list(reader.fieldnames or [])
    if RUN_COLUMN not in columns:  # written before runs had names: one run, the first
        columns.insert(min(1, len(columns)), RUN_COLUMN)
    for row in rows:
        row[RUN_COLUMN] = row.get(RUN_COLUMN) or RUN_DIRECTORY
    return columns, rows


def _csv_text(columns, rows) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()

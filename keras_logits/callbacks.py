"""LogitsLogger: what the classifier outputs, logged every epoch without a second training pass."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Union

import keras
import numpy as np

from keras_logits._callback_list import (calling_callback_list, compiled_metric_directions, guard_train_function,
                                         put_first, set_monitor_directions, take_out)
from keras_logits._distribution import is_chief
from keras_logits._expose import LOGITS
from keras_logits._graph import model_outputs
from keras_logits._log_files import LogFiles
from keras_logits._probe import check_probe_labels, load_probe
from keras_logits._probe_runner import MASK, ProbeForward, build_probe_model, logged_model
from keras_logits._tensorboard_events import require_tensorboard
from keras_logits.checks import ModelCheckWarning, check_model
from keras_logits.statistics import summarize

__all__ = ["LogitsLogger", "probe_key"]

PROBE_PREFIX = "probe_"
# The better direction of the probe values that have one, for Keras' `mode="auto"`.
DIRECTIONS = {"ece": "min", "brier": "min", "nonfinite": "min", "accuracy": "max"}
# An epoch's files are on disk before this step of the next epoch begins (their writes overlap the steps
# before it; an epoch with fewer steps waits for the previous epoch's files at its own end).
DURABLE_BY_STEP = 8


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
    permissions of a plain `open`, on one background thread so that training
    does not wait on the disk: the epoch's values reach `logs` (History,
    `EarlyStopping`) in the same epoch, and its files are complete before the
    eighth step of the next epoch begins (or at its end, if it is shorter),
    when `fit` returns, when a training
    step raises (an error, `KeyboardInterrupt`), and before the interpreter
    exits. A process killed with SIGKILL loses at most the epoch that just
    ended. Under `MultiWorkerMirroredStrategy` or multi-process JAX only the
    chief writes.

    Args:
        probe: `x`, `(x, labels)` or a `tf.data.Dataset` of `x` or `(x, labels)`
            batches; a dict `x` is keyed by input name. Read once, at the start of training.
        log_dir: Directory for TensorBoard runs and snapshots (TensorBoard events need the
            `tensorboard` package; without it `log_dir=` is refused at construction).
        csv_path: CSV file to write or continue.
        every_n_epochs: Probe every this many epochs (and the first epoch of each `fit`).
        histograms: Write TensorBoard histograms of the probe outputs.
        snapshots: Write `.npz` snapshots (`True` in the default place, a path
            chooses the directory, `False` writes none).
        stop_on_nonfinite: Stop training when the probe or the epoch's
            `nonfinite` metric saw NaN/inf logits.
        batch_size: Probe prediction batch size. The default predicts a probe of up to
            1024 samples in one call: each call pays a fixed cost, so fewer, larger calls
            are cheaper.
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
        check: Run `keras_logits.check_model` at train begin and warn (`ModelCheckWarning`) about
            what it finds (an activation-loss mismatch, ...); `False` turns the warnings off.

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
        check: bool = True,
    ):
        super().__init__()
        for name, value in (("every_n_epochs", every_n_epochs), ("batch_size", batch_size),
                            ("max_histogram_values", max_histogram_values), ("keep_last", keep_last),
                            ("keep_every", keep_every), ("max_snapshot_bytes", max_snapshot_bytes)):
            if value is not None and int(value) < 1:
                raise ValueError(f"LogitsLogger {name} must be >= 1, got {value}.")
        if snapshot_dtype not in ("float32", "float16"):
            raise ValueError(f"LogitsLogger snapshot_dtype must be 'float32' or 'float16', got {snapshot_dtype!r}.")
        if log_dir is not None:
            require_tensorboard()
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
        self.check = check
        self.run_dir: Optional[Path] = None
        self.run: Optional[str] = None
        self.snapshot_dir: Optional[Path] = None
        self.stop_reason: Optional[str] = None
        self._files = self._unguard = None
        self._first_epoch: Optional[int] = None
        self._steps = 0
        self._callback_list = None
        self._front = None

    # ---- set-up: validate everything before the first epoch ---------------------------------

    def on_train_begin(self, logs=None):
        callback_list = calling_callback_list(self)
        self._finish()  # a fit that raised outside a step leaves its writes to the next one
        self._set_up_probe()
        dummy = np.zeros((1, 2 if self._activation == "softmax" else 1))
        self._statistics = list(summarize(dummy, None if self._labels is None else [0], activation=self._activation))
        self._chief = is_chief(self.model)
        self._keras_tensorboard = False
        self._join_callback_list(callback_list)
        if self._chief:
            if self.check:  # each fit: a recompile changes the loss check_model reads, not the variables
                for finding in check_model(self.model):
                    warnings.warn(str(finding), ModelCheckWarning, stacklevel=2)
            self._files = LogFiles(
                log_dir=self.log_dir, csv_path=self.csv_path, snapshot_parent=self._snapshot_parent(),
                shared_snapshots=self.snapshots is not True, activation=self._activation, labels=self._labels,
                ignore_class=self.ignore_class, histograms=self.histograms,
                max_histogram_values=self.max_histogram_values,
                snapshot_options=dict(dtype=self.snapshot_dtype, compress=self.compress_snapshots,
                                      max_bytes=self.max_snapshot_bytes, keep_last=self.keep_last,
                                      keep_every=self.keep_every))
            self._unguard = guard_train_function(self.model, lambda: self._finish(quiet=True))
        self._first_epoch = None
        self._probed = None

    def _set_up_probe(self):
        """The logged model, the probe and its compiled forward: built at the first fit, reused by the next.

        A later `fit` of the same model (same variables: the same graph) with the
        same probe and options reuses them, compiled function included: a loop
        that calls `fit` once per epoch pays the set-up and the compilation once.
        """
        key = (id(self.model), tuple(id(variable) for variable in self.model.variables), id(self.probe), self.head,
               self.activation, self.batch_size, self.ignore_class)
        if getattr(self, "_set_up_for", None) == key:
            return
        self._classifier, self._exposed, head = logged_model(self.model, head=self.head, activation=self.activation)
        self._activation = head.activation
        self._feed, self._labels, self._count = load_probe(self.probe, self._exposed)
        self._probe_model = build_probe_model(self._classifier, self._exposed, head, self.model.name)
        self._forward = ProbeForward(self._probe_model, self._feed, self._count, self.batch_size)
        check_probe_labels(self._labels, tuple(model_outputs(self._exposed)[LOGITS].shape[1:]), self._activation,
                           ignore_class=self.ignore_class, model_name=self.model.name)
        self._set_up_for = key

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
        """Runs the probe first at epoch end (`_callback_list.ProbeFirst`), so every callback sees its values.

        Fallback: called from no `CallbackList` (a hand-written loop, a
        wrapping callback, an interpreter without frame access), the probe
        runs at this callback's own `on_epoch_end`, which one warning says.
        """
        self._callback_list = callback_list
        if callback_list is None:
            warnings.warn(
                "LogitsLogger was not started by a Keras CallbackList (fit/evaluate's), so it cannot run its probe "
                "before the other callbacks: those that run before it at epoch end (an EarlyStopping, "
                "ModelCheckpoint, CSVLogger, ...) do not see the probe_logits_* values. Run it before them.",
                RuntimeWarning, stacklevel=3)
            return
        self._front = put_first(callback_list, self._before_epoch_end)
        self._set_monitor_directions()
        self._keras_tensorboard = self.log_dir is not None and any(
            isinstance(callback, keras.callbacks.TensorBoard)
            and Path(callback.log_dir).resolve() == self.log_dir.resolve() for callback in callback_list.callbacks)

    def _before_epoch_end(self, epoch, logs):
        if self._first_epoch is None:
            self.on_epoch_begin(epoch)
        # Compiled metrics are built by the first step (on torch after on_train_begin): read their directions
        # now, before any monitoring callback sets its own on its first epoch end.
        self._set_monitor_directions()
        self._probe(epoch, logs)

    def _set_monitor_directions(self):
        """Gives every `mode="auto"` monitoring callback in the list the direction of the value it watches."""
        if self._callback_list is None:
            return
        directions = {**compiled_metric_directions(self.model),
                      **{probe_key(statistic): mode for statistic, mode in DIRECTIONS.items()}}
        set_monitor_directions(self._callback_list.callbacks, directions)

    # ---- every epoch ------------------------------------------------------------------------

    def on_epoch_begin(self, epoch, logs=None):
        self._steps = 0
        if self._first_epoch is not None:
            return
        self._first_epoch = epoch
        if self._files is not None:
            self._files.start(epoch)
            self.run_dir, self.run, self.snapshot_dir = self._files.run_dir, self._files.run, self._files.snapshot_dir

    def on_train_batch_begin(self, batch, logs=None):
        # Not a batch *end* hook, so Keras' async dispatch stays on; the count is per epoch, whatever the batch
        # numbering (steps_per_execution).
        self._steps += 1
        if self._steps == DURABLE_BY_STEP and self._files is not None:
            self._files.wait_if_pending()

    def _should_probe(self, epoch) -> bool:
        return epoch == self._first_epoch or (epoch + 1) % self.every_n_epochs == 0

    def _probe(self, epoch, logs):
        """Predicts the probe once per epoch (the first of the front step and this callback to run)."""
        if self._probed is not None and self._probed[0] == epoch:
            return self._probed[1]
        result = None
        if self._should_probe(epoch):
            outputs = self._forward()
            summary = summarize(outputs[LOGITS], self._labels, activation=self._activation, mask=outputs.get(MASK),
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
        if self._files is not None:
            if self._steps < DURABLE_BY_STEP:
                self._files.wait_if_pending()
            if result is None:  # no probe this epoch: no NaN points in TensorBoard
                values = {key: value for key, value in values.items() if not key.startswith(PROBE_PREFIX)}
            # Keras' TensorBoard callback on the same log_dir already has the epoch's logs.
            scalars = {k: v for k, v in values.items() if k.startswith(PROBE_PREFIX) or not self._keras_tensorboard}
            self._files.write(epoch, values, None if result is None else result[0], scalars=scalars)
        if result is not None:
            self._maybe_stop(epoch, result[1], values)

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

    # ---- the end: on success, and when a training step raises -----------------------------------

    def on_train_end(self, logs=None):
        self._finish()

    def _finish(self, quiet: bool = False):
        """Writes what is queued, closes the files, and leaves the model and callback list as they were."""
        unguard, self._unguard = self._unguard, None
        if unguard is not None:
            unguard()
        if self._callback_list is not None:
            take_out(self._callback_list, self._front)  # a CallbackList the user passed to fit() outlives it
            self._callback_list = None
        files, self._files = self._files, None
        try:
            if files is not None:
                files.close()
        except Exception as error:
            if not quiet:
                raise
            warnings.warn(f"LogitsLogger could not write its files: {error}", RuntimeWarning, stacklevel=3)

"""Keras' callback list, as LogitsLogger needs it: the list that calls it, and monitor directions it can give.

Keras hands a callback no reference to its `CallbackList` and finds a
monitored value's direction only from a compiled metric's own name; both are
read here from Keras internals (calling frames, `_compile_metrics`), in one
place, each with a fallback.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

import keras


def calling_callback_list(logger) -> Optional[keras.callbacks.CallbackList]:
    """The Keras `CallbackList` whose `on_train_begin` is calling `logger`'s, or None.

    Keras gives a callback no reference to its list; the list is a local of
    a calling frame (`self` of `CallbackList.on_train_begin`, also a list the
    user passed to `fit`, or a subclass calling `super()`). A few frames up at
    most: anything else (no frames on this interpreter, a wrapping callback)
    is the documented fallback.
    """
    try:
        frame = sys._getframe(2)
    except (AttributeError, ValueError):
        return None
    for _ in range(4):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, keras.callbacks.CallbackList) and any(c is logger for c in candidate.callbacks):
            return candidate
        frame = frame.f_back
    return None


class ProbeFirst(keras.callbacks.Callback):
    """First in Keras' callback list: calls `before_epoch_end(epoch, logs)` before any callback reads the logs."""

    def __init__(self, before_epoch_end):
        super().__init__()
        self._before_epoch_end = before_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        self._before_epoch_end(epoch, logs)


def put_first(callback_list: keras.callbacks.CallbackList, before_epoch_end) -> ProbeFirst:
    """Puts a `ProbeFirst` calling `before_epoch_end` at the front of `callback_list` (replacing an earlier one).

    Keras runs callbacks in list order with one shared `logs` dict and has no
    hook between the last step and the first `on_epoch_end`. The list object
    is replaced, not changed, so the loop now running continues unaffected.
    """
    front = ProbeFirst(before_epoch_end)
    callback_list.callbacks = [front] + [c for c in callback_list.callbacks if not isinstance(c, ProbeFirst)]
    return front


def take_out(callback_list: keras.callbacks.CallbackList, front: Optional[ProbeFirst]) -> None:
    """Removes `front` from `callback_list`, leaving the list as it was before `put_first`."""
    callback_list.callbacks = [c for c in callback_list.callbacks if c is not front]


def guard_train_function(model, on_error: Callable[[], None]) -> Optional[Callable[[], None]]:
    """Wraps `model.train_function` so that a step that raises calls `on_error()` first; returns the undo.

    Keras 3 calls `on_train_end` only when `fit` succeeds and gives callbacks
    no `finally`; the train function (built before `on_train_begin` on every
    backend) is where an error or a `KeyboardInterrupt` in a step surfaces.
    None when the model has no train function yet (a callback driven by hand).
    """
    function = getattr(model, "train_function", None)
    if function is None:
        return None

    def guarded(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except BaseException:
            on_error()
            raise

    def undo():
        if getattr(model, "train_function", None) is guarded:
            model.train_function = function

    model.train_function = guarded
    return undo


def compiled_metric_directions(model) -> dict:
    """`{"<output>_<metric>": "min"/"max"}` for the compiled metrics that declare `_direction`, per output.

    The names are those of Keras' logs (`compile_utils.CompileMetrics.result`);
    `val_` versions are the same metric.
    """
    directions = {}
    compiled = getattr(model, "_compile_metrics", None)
    # Keras 3.15 keeps the per-output lists (with their output names) only in these private attributes.
    lists = [] if compiled is None else (getattr(compiled, "_flat_metrics", None) or []) + (
        getattr(compiled, "_flat_weighted_metrics", None) or [])
    for metrics_list in lists:
        if metrics_list is not None:
            output = getattr(metrics_list, "output_name", None)
            for metric in getattr(metrics_list, "metrics", []):
                direction = getattr(metric, "_direction", None)
                if direction in ("up", "down"):
                    name = f"{output}_{metric.name}" if output else metric.name
                    directions.setdefault(name, "max" if direction == "up" else "min")
    return directions


def set_monitor_directions(callbacks, directions: dict) -> None:
    """Sets the monitor op of each `mode="auto"` callback in `callbacks` whose value is in `directions`."""
    for callback in callbacks:
        _set_monitor_direction(callback, directions)


def _set_monitor_direction(callback, directions: dict):
    """Sets the monitor op of a `mode="auto"` callback whose value has a direction Keras cannot find.

    Keras' `MonitorCallback` matches a compiled metric's own name (`ece`)
    against the monitor without `val_` (`logits_ece`), so it finds no
    direction for the metrics of one output of a multi-output model; the
    metric declares it (`_direction`), and this reads it.
    """
    monitor = getattr(callback, "monitor", None)
    if (getattr(callback, "mode", None) != "auto" or getattr(callback, "monitor_op", 0) is not None
            or not hasattr(callback, "_set_monitor_op") or not isinstance(monitor, str)):
        return
    mode = directions.get(monitor.removeprefix("val_"))
    if mode is None:
        return
    callback.mode = mode
    try:
        callback._set_monitor_op()
    finally:
        callback.mode = "auto"

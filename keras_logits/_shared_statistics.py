"""The one state and one pass behind the eight metrics of `keras_logits.metrics.default_metrics()`.

Keras names a metric's logs after the metric object (`logits_ece`,
`val_logits_ece`, `logits_weighted_ece`) and reads `_direction` from it for
`mode="auto"`, while the inner keys of a metric whose `result()` is a dict
are logged as they are, without the output's name (`pythonify_logs`). So
`default_metrics()` keeps one metric object per statistic, and they share
this state: the first of the list (its owner, which tracks it) updates it for
all eight in one pass with one `assign_add`; the others read their statistic
from it.

Example:

>>> from keras_logits.metrics import default_metrics
>>> metrics = default_metrics()
>>> for metric in metrics:
...     metric.update_state([0, 1], [[2.0, 0.0], [2.0, 0.0]])
>>> [round(float(m.result()), 4) for m in metrics[6:]]  # ece, brier
[0.3808, 0.79]
>>> len(sum((m.variables for m in metrics), []))
1
"""

from __future__ import annotations

import functools
from typing import Optional

import keras
from keras import ops

from keras_logits import _metric_math as math


class SharedStatistics(keras.metrics.Metric):
    """All eight statistics of `default_metrics()` from one pass per batch, in one state vector.

    Its owner, the first metric of the list, runs the pass; the others read from it.
    """

    def __init__(self, activation: str, ignore_class: Optional[int], num_bins: int):
        super().__init__(name="shared_statistics")
        self.activation, self.ignore_class, self.num_bins = activation, ignore_class, num_bins
        self.sums = self.add_variable(shape=((2 + num_bins) * len(math.COLUMNS),), initializer="zeros",
                                      name="sums", aggregation="sum")
        self._rounds, self._weighted = 0, None
        self._results = None  # (trace key, the results computed from it)

    def update_for(self, metric, y_true, y_pred, sample_weight):
        """Updates the state when `metric` is the owner; checks, when it is not, that the owner ran first."""
        # Python-level counts: they run while Keras traces the step (and each eager step), in list order.
        if metric._owns_shared:
            self._rounds += 1
            self._results = None
            self._weighted = sample_weight is not None
            rows, labels, weights = math.positions(y_true, y_pred, sample_weight, activation=self.activation,
                                                   ignore_class=self.ignore_class)
            self.sums.assign_add(math.statistic_sums(rows, labels, weights, activation=self.activation,
                                                     from_logits=True, num_bins=self.num_bins))
            return
        metric._calls += 1
        if metric._calls > self._rounds:
            raise ValueError(
                f"Metric '{metric.name}' comes from default_metrics(), whose eight metrics share one computation "
                "that the first of them runs: compile the whole list, in its order, or use the class on its own "
                f"(keras_logits.metrics.{type(metric).__name__}(...)).")
        if (sample_weight is not None) != self._weighted:
            raise ValueError(
                f"Metric '{metric.name}' comes from default_metrics() but got a sample_weight where the first of "
                "its list got none, or the reverse (was the list split between metrics= and weighted_metrics=?): "
                "compile the whole list under one of them (call default_metrics() once for each).")

    def statistic(self, name):
        """One statistic; all eight are computed once per trace (TensorFlow graph, JAX state value)."""
        key, traced = _trace_key(self.sums)
        if key is None or self._results is None or self._results[0] is not key:
            if traced:
                results = self.result()
            else:  # at epoch end: one compiled call, not some twenty eager ops
                results = _compiled_statistics()(ops.convert_to_tensor(self.sums), self.num_bins)
            self._results = (key, results)
        return self._results[1][name]

    def reset_state(self):
        self._results = None
        super().reset_state()

    def update_state(self, *args, **kwargs):
        raise TypeError("SharedStatistics is updated through the metrics of default_metrics().")

    def result(self):
        return math.statistics_from_sums(ops.convert_to_tensor(self.sums), self.num_bins)


def _trace_key(variable):
    """`(what identifies the state results were computed from, or None: no reuse; whether it is traced)`.

    TensorFlow: the graph being traced (the owner's update clears the results
    when the state changes within it); JAX: the state's value, immutable, a new
    object after each update, traced or not; torch updates in place: no reuse.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return (tf.compat.v1.get_default_graph(), True) if tf.inside_function() else (None, False)
    if backend == "jax":
        import jax

        return variable.value, isinstance(variable.value, jax.core.Tracer)
    return None, True


@functools.lru_cache(maxsize=None)
def _compiled_statistics():
    """`statistics_from_sums` compiled once per process for eager calls (TensorFlow, JAX); torch runs it as is."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(math.statistics_from_sums, reduce_retracing=True)
    if backend == "jax":
        import jax

        return jax.jit(math.statistics_from_sums, static_argnums=1)
    return math.statistics_from_sums

"""Which process writes files, and how a probe is predicted: distribution details, in one place.

Nothing here imports TensorFlow or JAX at module level; it only asks the backend
that is already loaded.
"""

from __future__ import annotations

import sys

import numpy as np


def is_chief(model=None) -> bool:
    """True in the one process that should write logs: the chief worker / JAX process 0.

    Under `tf.distribute.MultiWorkerMirroredStrategy` only the chief checkpoints
    (`strategy.extended.should_checkpoint`); under multi-process JAX only
    `jax.process_index() == 0`. Single-process training is always chief.
    """
    if _jax_in_use():
        import jax

        if jax.process_count() > 1:
            return jax.process_index() == 0
    strategy = getattr(model, "distribute_strategy", None) if model is not None else None
    if strategy is None and sys.modules.get("tensorflow") is not None and _backend() == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.get_strategy()
    extended = getattr(strategy, "extended", None)
    return bool(getattr(extended, "should_checkpoint", True))


def _backend() -> str:
    import keras

    return keras.backend.backend()


def _jax_in_use() -> bool:
    """Whether Keras runs on JAX; JAX merely being imported (by another library) does not count.

    Asking JAX for its processes initialises its backends, which on a GPU host
    claims device memory, so it is asked only when Keras itself uses JAX.
    """
    return "jax" in sys.modules and _backend() == "jax"


def is_distributed(model=None) -> bool:
    """True when `model` runs over several replicas or devices.

    `predict_on_batch` is not distribution-aware there (under MirroredStrategy
    every replica predicts the whole batch and the outputs are concatenated),
    so callers use `predict` instead.
    """
    strategy = getattr(model, "distribute_strategy", None) if model is not None else None
    if strategy is not None and getattr(strategy, "num_replicas_in_sync", 1) > 1:
        return True
    import keras

    distribution = getattr(keras, "distribution", None)
    return distribution is not None and distribution.distribution() is not None


def batch_multiple() -> int:
    """How many ways the batch is split under the current Keras distribution (JAX); 1 without one.

    A batch fed to a model under `keras.distribution.DataParallel` over 2
    devices must have an even size; callers pad to a multiple of this.
    """
    import keras

    distribution = keras.distribution.distribution() if hasattr(keras, "distribution") else None
    if distribution is None:
        return 1
    mesh = getattr(distribution, "device_mesh", None)
    name = getattr(distribution, "batch_dim_name", None)
    if mesh is None or name not in getattr(mesh, "axis_names", ()):
        return 1
    return int(mesh.shape[list(mesh.axis_names).index(name)])


def process_count() -> int:
    """Number of JAX processes (hosts) training together; 1 when Keras does not run on JAX."""
    if not _jax_in_use():
        return 1
    import jax

    return jax.process_count()


def predict_across_processes(model, x, batch_size: int) -> dict:
    """`model`'s outputs for all of `x`, each row computed once, on every process (multi-process JAX).

    Keras' `predict` cannot return arrays that span other processes' devices,
    and with each process feeding its own data it would predict `x` once per
    process. Here process `i` predicts its contiguous share of `x` on its own
    devices (with its local copy of the replicated variables, outside the
    global distribution), and one all-gather gives every process the whole
    result in order. Every process must call it (it is a collective).
    """
    import jax
    import keras
    from jax.experimental import multihost_utils

    count = row_count(x)
    share = -(-count // jax.process_count())
    start = min(jax.process_index() * share, count)
    local = take_rows(x, start, min(start + share, count), pad_to=share)

    def local_copy(variable):
        value = variable.value
        if not value.is_fully_replicated:
            raise NotImplementedError(
                f"Variable '{variable.path}' is sharded across devices; the multi-process probe needs "
                "replicated variables (keras.distribution.DataParallel)."
            )
        return value.addressable_data(0)

    trainable = [local_copy(v) for v in model.trainable_variables]
    non_trainable = [local_copy(v) for v in model.non_trainable_variables]
    forward = jax.jit(lambda t, n, inputs: model.stateless_call(t, n, inputs, training=False)[0])
    saved = keras.distribution.distribution()
    keras.distribution.set_distribution(None)  # a local computation: no global layouts
    try:
        chunks = [forward(trainable, non_trainable, take_rows(local, i, i + batch_size))
                  for i in range(0, share, batch_size)]
    finally:
        keras.distribution.set_distribution(saved)
    outputs = {key: np.concatenate([np.asarray(chunk[key]) for chunk in chunks]) for key in chunks[0]}
    gathered = multihost_utils.process_allgather(outputs, tiled=True)
    # Shares are contiguous and only the last ones are padded, so the first `count` rows are x's, in order.
    return {key: np.asarray(value)[:count] for key, value in gathered.items()}


def row_count(x) -> int:
    """Number of samples in an array, or a list or dict of arrays (one per model input).

    Example:

    >>> import numpy as np
    >>> row_count({"image": np.zeros((5, 2)), "text": np.zeros((5, 3))}), row_count([np.zeros((4, 1))])
    (5, 4)
    """
    if isinstance(x, dict):
        x = next(iter(x.values()))
    elif isinstance(x, (list, tuple)):
        x = x[0]
    return len(x)


def take_rows(x, start: int, stop: int, pad_to: int = 0):
    """Rows [start, stop) of an array, list or dict of arrays, zero-padded to `pad_to` rows.

    Example:

    >>> import numpy as np
    >>> take_rows(np.arange(1, 6), 3, 10, pad_to=4)
    array([4, 5, 0, 0])
    """
    if isinstance(x, dict):
        return {key: take_rows(value, start, stop, pad_to) for key, value in x.items()}
    if isinstance(x, (list, tuple)):
        return [take_rows(value, start, stop, pad_to) for value in x]
    part = x[start:stop]
    missing = pad_to - len(part)
    if missing > 0:
        part = np.concatenate([part, np.zeros((missing, *part.shape[1:]), dtype=part.dtype)])
    return part

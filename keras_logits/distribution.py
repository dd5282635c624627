"""Which process writes files: backend-specific distribution details, in one place.

Nothing here imports TensorFlow or JAX; it only asks the backend that is already loaded.
"""

from __future__ import annotations

import sys


def is_chief(model=None) -> bool:
    """True in the one process that should write logs: the chief worker / JAX process 0.

    Under `tf.distribute.MultiWorkerMirroredStrategy` only the chief checkpoints
    (`strategy.extended.should_checkpoint`); under multi-process JAX only
    `jax.process_index() == 0`. Single-process training is always chief.
    """
    if "jax" in sys.modules:
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

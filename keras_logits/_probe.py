"""The probe set of `LogitsLogger`: read once, checked against the model's inputs by name."""

from __future__ import annotations

from typing import Optional

import numpy as np


def read_probe(probe) -> tuple:
    """Returns `(x, labels or None)` as NumPy from `x`, `(x, labels)` or a `tf.data.Dataset`.

    `x` keeps its structure (array, list or dict of arrays); a dataset is read once.

    Example:

    >>> import numpy as np
    >>> x, labels = read_probe(({"b": np.zeros((2, 3)), "a": np.ones((2, 1))}, [0, 1]))
    >>> sorted(x), labels
    (['a', 'b'], array([0, 1]))
    """
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
        if isinstance(xs[0], dict):
            x = {key: np.concatenate([batch[key] for batch in xs]) for key in xs[0]}
        elif isinstance(xs[0], (list, tuple)):
            x = [np.concatenate([batch[i] for batch in xs]) for i in range(len(xs[0]))]
        else:
            x = np.concatenate(xs)
        return x, (np.concatenate(ys) if ys else None)
    if isinstance(probe, tuple) and len(probe) == 2:
        return _as_arrays(probe[0]), np.asarray(probe[1])
    return _as_arrays(probe), None


def _as_arrays(x):
    if isinstance(x, dict):
        return {key: np.asarray(value) for key, value in x.items()}
    if isinstance(x, (list, tuple)):
        return [np.asarray(value) for value in x]
    return np.asarray(x)


def input_names(model) -> list:
    """The names a dict of inputs is keyed by, in the order of `model.inputs`.

    A model built from a dict of inputs is keyed by that dict's keys; any
    other by its `InputLayer` names, the keys Keras' own input check asks for
    (`input_layer`, `input_layer_1` for unnamed inputs, whose tensors are
    named `keras_tensor`, ...).

    Example:

    >>> import keras
    >>> a, b = keras.Input((2,), name="a"), keras.Input((3,))
    >>> input_names(keras.Model([a, b], keras.layers.Concatenate()([a, b])))[0]
    'a'
    """
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        by_tensor = {id(tensor): name for name, tensor in struct.items()}
        return [by_tensor.get(id(tensor), _layer_name(tensor)) for tensor in model.inputs]
    return [_layer_name(tensor) for tensor in model.inputs]


def _layer_name(tensor) -> str:
    history = getattr(tensor, "_keras_history", None)
    return history[0].name if history else tensor.name


def _aliases(model) -> list:
    """Per input, every key that names it: the key of `input_names`, its InputLayer's and its tensor's name."""
    return [list(dict.fromkeys((name, _layer_name(tensor), tensor.name)))
            for name, tensor in zip(input_names(model), model.inputs)]


def probe_arrays(x, model, *, what: str = "LogitsLogger probe") -> list:
    """The probe's input arrays in the order of `model.inputs`, checked: a dict is paired by input name.

    A dict may be keyed by the input names (`input_names`) or by the input
    tensors' names (`keras_tensor`, which Keras' JAX `predict` accepts).
    Raises a one-line `ValueError` for a wrong count, unknown or missing names,
    a shape that does not fit, or an empty probe.

    Example:

    >>> import keras, numpy as np
    >>> a, b = keras.Input((2,), name="a"), keras.Input((3,), name="b")
    >>> model = keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))
    >>> [array.shape for array in probe_arrays({"b": np.zeros((4, 3)), "a": np.zeros((4, 2))}, model)]
    [(4, 2), (4, 3)]
    """
    names = input_names(model)
    if isinstance(x, dict):
        found = [next((key for key in keys if key in x), None) for keys in _aliases(model)]
        missing = [name for name, key in zip(names, found) if key is None]
        if missing:
            raise ValueError(
                f"{what} is a dict with keys {sorted(x)}, but model '{model.name}' takes inputs {names}; "
                f"key the probe by those input names (missing: {missing})."
            )
        arrays = [x[key] for key in found]
    else:
        arrays = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(arrays) != len(names):
            raise ValueError(
                f"{what} has {len(arrays)} input arrays; model '{model.name}' takes {len(names)} "
                f"({names}). Pass one array per input, or a dict keyed by input name."
            )
    counts = set()
    for name, array, tensor in zip(names, arrays, model.inputs):
        shape = tuple(tensor.shape[1:])
        found_shape = tuple(np.shape(array)[1:])
        if len(found_shape) != len(shape) or any(s is not None and s != f for s, f in zip(shape, found_shape)):
            raise ValueError(
                f"{what} input '{name}' has shape {tuple(np.shape(array))}, but model '{model.name}' "
                f"expects (batch, {', '.join(str(s) for s in shape)}). Pass probe samples shaped like "
                "the training inputs."
            )
        counts.add(len(array))
    if len(counts) > 1:
        raise ValueError(f"{what} inputs have different sample counts {sorted(counts)}; pass the same samples "
                         "for every input.")
    if counts == {0}:
        raise ValueError(f"{what} is empty; pass at least one sample.")
    return arrays


def model_feed(arrays: list, model):
    """`probe_arrays`' arrays in the structure `model` is called with, whatever the probe's keys were.

    A dict-built model gets a dict keyed like it; any other a list in the
    order of `model.inputs` (one input: the array), which Keras accepts on
    every backend, while a dict of a list-built model's unnamed inputs is
    refused by TensorFlow and torch under any keys.

    Example:

    >>> import keras, numpy as np
    >>> a, b = keras.Input((2,)), keras.Input((3,))
    >>> model = keras.Model([a, b], keras.layers.Concatenate()([a, b]))
    >>> first, second = input_names(model)  # input_layer, input_layer_1 in a fresh session
    >>> feed = model_feed(probe_arrays({second: np.ones((1, 3)), first: np.ones((1, 2))}, model), model)
    >>> [array.shape for array in feed]
    [(1, 2), (1, 3)]
    """
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        return dict(zip(input_names(model), arrays))
    return arrays[0] if len(arrays) == 1 else list(arrays)


def check_labels(labels: Optional[np.ndarray], count: int, *, what: str = "LogitsLogger probe") -> None:
    """Raises when the probe has a different number of labels than samples."""
    if labels is not None and len(labels) != count:
        raise ValueError(f"{what} has {count} inputs but {len(labels)} labels; pass one label per input.")

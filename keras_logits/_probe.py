"""Inputs checked against a model once, at the boundary: `LogitsLogger`'s probe and the command line's batch.

`check_input` is the one check of an input array (its dtype and its shape
after the batch axis) that both use; `load_probe` reads a probe, pairs it
with the model's inputs by name and checks its labels."""

from __future__ import annotations

from typing import Optional

import numpy as np

from keras_logits._graph import inputs_by_name, producing_layer


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
    struct = inputs_by_name(model)
    if isinstance(struct, dict):
        by_tensor = {id(tensor): name for name, tensor in struct.items()}
        return [by_tensor.get(id(tensor), _layer_name(tensor)) for tensor in model.inputs]
    return [_layer_name(tensor) for tensor in model.inputs]


def _layer_name(tensor) -> str:
    layer = producing_layer(tensor)
    return layer.name if layer is not None else tensor.name


def _aliases(model) -> list:
    """Per input, every key that names it: the key of `input_names`, its InputLayer's and its tensor's name."""
    return [list(dict.fromkeys((name, _layer_name(tensor), tensor.name)))
            for name, tensor in zip(input_names(model), model.inputs)]


def probe_arrays(x, model, *, what: str = "LogitsLogger probe") -> list:
    """The probe's input arrays in the order of `model.inputs`, checked: a dict is paired by input name.

    A dict may be keyed by the input names (`input_names`) or by the input
    tensors' names (`keras_tensor`, which Keras' JAX `predict` accepts).
    Raises a one-line `ValueError` for a wrong count, unknown or missing names,
    a shape or values that do not fit (`check_input`), or an empty probe.

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
    arrays = [check_input(array, tuple(tensor.shape), _dtype_name(tensor.dtype), source=f"{what} input '{name}'",
                          model=f"model '{model.name}'", advice=" Pass probe samples shaped like the training inputs.")
              for name, array, tensor in zip(names, arrays, model.inputs)]
    counts = {len(array) for array in arrays}
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
    struct = inputs_by_name(model)
    if isinstance(struct, dict):
        return dict(zip(input_names(model), arrays))
    return arrays[0] if len(arrays) == 1 else list(arrays)


def check_labels(labels: Optional[np.ndarray], count: int, *, what: str = "LogitsLogger probe") -> None:
    """Raises when the probe has a different number of labels than samples."""
    if labels is not None and len(labels) != count:
        raise ValueError(f"{what} has {count} inputs but {len(labels)} labels; pass one label per input.")


def check_probe_labels(labels: Optional[np.ndarray], logits_shape: tuple, activation: str, *,
                       ignore_class: Optional[int] = None, model_name: str = "") -> None:
    """Probe labels must be `(batch, positions...)` class ids in range, or shaped like the logits.

    `logits_shape` is the logits' shape after the batch axis. Ids out of
    range name `ignore_class` when the largest looks like a "void" id.

    Example:

    >>> check_probe_labels(np.array([0, 255]), (3,), "softmax")
    Traceback (most recent call last):
    ...
    ValueError: LogitsLogger probe labels must be class ids in [0, 3); got values from 0 to 255. If 255 marks \
positions to skip (e.g. 255 'void' pixels), pass ignore_class=255.
    """
    if labels is None:
        return
    found = tuple(labels.shape[1:])
    if found[-1:] == (1,) and found[:-1] == logits_shape[:-1] and logits_shape[-1] != 1:
        found = found[:-1]
    fits = any(len(found) == len(want) and all(w is None or w == f for w, f in zip(want, found))
               for want in (logits_shape, logits_shape[:-1]))
    if not fits:
        raise ValueError(
            f"LogitsLogger probe labels have shape {tuple(labels.shape)}, but the logits of model "
            f"'{model_name}' are (batch, {', '.join(str(s) for s in logits_shape)}); pass labels "
            f"shaped (batch, {', '.join(str(s) for s in logits_shape[:-1]) or ''}) (class ids) or like "
            "the logits (one-hot / multi-hot)."
            .replace("(batch, )", "(batch,)")
        )
    if found == logits_shape[:-1] and activation == "softmax" and logits_shape[-1] != 1:
        classes = logits_shape[-1]
        ids = labels if ignore_class is None else labels[labels != ignore_class]
        if ids.size and (np.any(ids != np.round(ids)) or ids.min() < 0 or ids.max() >= classes):
            hint = (f" If {int(ids.max())} marks positions to skip (e.g. 255 'void' pixels), pass "
                    f"ignore_class={int(ids.max())}." if ids.max() >= classes and ignore_class is None else "")
            raise ValueError(f"LogitsLogger probe labels must be class ids in [0, {classes}); got values from "
                             f"{ids.min()} to {ids.max()}.{hint}")


def load_probe(probe, model) -> tuple:
    """`(feed, labels or None, count)`: a probe read once, checked against `model`'s inputs, fed as it is called.

    The one reading and validation of a `LogitsLogger` probe: `read_probe`,
    `probe_arrays` (names, counts, `check_input` per input), `model_feed` and
    one label per sample.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> feed, labels, count = load_probe((np.zeros((4, 3)), [0, 1, 1, 0]), model)
    >>> feed.dtype, labels.shape, count
    (dtype('float32'), (4,), 4)
    """
    x, labels = read_probe(probe)
    arrays = probe_arrays(x, model)
    # Fed as the model is called, not by the probe's keys: Keras on TensorFlow and torch refuses a dict for
    # a model built from a list of unnamed inputs under any keys.
    check_labels(labels, len(arrays[0]))
    return model_feed(arrays, model), labels, len(arrays[0])


def check_input(x, shape: tuple, dtype: str, *, source: str, model: str = "the model",
                advice: str = "") -> np.ndarray:
    """`x` as an input of `shape` (batch first) and `dtype` takes it, refusing anything that would change values.

    Integer ids are never rounded through floats: fractional, non-finite or
    out-of-range values for an integer input are refused, as are strings for
    a numeric input and numbers for a string one. `source` names `x` in the
    one-line `ValueError` (`"input 'ids.npy'"`), `model` the model,
    `advice` is appended to a shape error.

    Example:

    >>> import numpy as np
    >>> check_input(np.array([[3.0, 7.0]]), (None, 2), "int32", source="input 'ids'")
    array([[3, 7]], dtype=int32)
    >>> check_input(np.zeros((1, 3)), (None, 2), "float32", source="input 'x'")
    Traceback (most recent call last):
    ...
    ValueError: Input 'x' has shape (1, 3), but the model expects (batch, 2).
    """
    x = _as_dtype(np.asarray(x), dtype, source, model)
    expected, found = tuple(shape[1:]), tuple(x.shape[1:])
    if len(found) != len(expected) or any(e is not None and e != f for e, f in zip(expected, found)):
        raise ValueError(f"{_capital(source)} has shape {tuple(x.shape)}, but {model} expects "
                         f"(batch, {', '.join(str(e) for e in expected)}).{advice}")
    return x


def _as_dtype(x: np.ndarray, dtype: str, source: str, model: str) -> np.ndarray:
    if dtype == "string":
        if x.dtype.kind not in "US":
            raise ValueError(f"{_capital(model)} takes strings, but {source} holds {x.dtype} values. "
                             "Pass a .txt file with one example per line, or an array of str.")
        return x.astype(str)
    if x.dtype.kind in "US":
        raise ValueError(f"{_capital(source)} holds strings, but {model} takes {dtype} inputs.")
    if dtype == "bool":
        return x.astype(bool)
    if "int" in dtype:
        if x.dtype.kind == "f":
            if not np.all(np.isfinite(x)) or np.any(x != np.round(x)):
                raise ValueError(f"{_capital(model)} takes integer ({dtype}) inputs, but {source} holds "
                                 "fractional or non-finite values. Pass whole numbers (ids).")
            if np.abs(x).max(initial=0) > 2 ** 53:
                raise ValueError(f"{_capital(source)} holds float ids above 2^53, which floats cannot hold exactly; "
                                 "save them as integers (an int64 array).")
        limits = np.iinfo(dtype)
        if x.size and (x.min() < limits.min or x.max() > limits.max):
            raise ValueError(f"{_capital(source)} holds values from {x.min()} to {x.max()}, outside the model's {dtype} "
                             f"range [{limits.min}, {limits.max}].")
    return x.astype(dtype)


def _dtype_name(dtype) -> str:
    """A Keras tensor's dtype as the name `check_input` takes (`"float32"`, `"int32"`, `"string"`)."""
    name = getattr(dtype, "name", None) or str(dtype)
    return "string" if name in ("string", "str", "object") else name


def _capital(phrase: str) -> str:
    return phrase[:1].upper() + phrase[1:]

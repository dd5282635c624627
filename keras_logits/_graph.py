"""The one place that reads Keras' private graph attributes: of models, tensors and nodes.

`_outputs_struct`, `_inputs_struct`, `_flatten_layers`, `_keras_history`, `_inbound_nodes` and
`node.arguments` are Keras internals; every other module asks here (the walk from an output back
to its head in `_walk` included), so a Keras upgrade that renames one of them is fixed in one file.
"""

from __future__ import annotations

import os
from typing import Optional

import keras


def is_graph_model(model) -> bool:
    """True for functional and Sequential models: their graph can be read (a subclassed model's cannot)."""
    try:
        return getattr(model, "outputs", None) is not None
    except (AttributeError, ValueError):
        return False


def model_outputs(model) -> dict:
    """Returns `{output_name: symbolic output tensor}` of a functional/Sequential model."""
    check_is_graph_model(model)
    structure = getattr(model, "_outputs_struct", None)
    if isinstance(structure, dict):
        return dict(structure)
    tensors = list(model.outputs)
    names = getattr(model, "output_names", None)
    if not names or len(names) != len(tensors):
        names = [producing_layer(t).name for t in tensors]
    return dict(zip(names, tensors))


def model_inputs(model):
    """Returns the symbolic inputs of a graph model in the structure it is called with."""
    inputs = model.inputs
    structure = getattr(model, "_inputs_struct", None)
    if structure is not None and not isinstance(structure, (list, tuple)):
        return structure
    return inputs[0] if len(inputs) == 1 else list(inputs)


def inputs_by_name(model) -> Optional[dict]:
    """`{name: symbolic input}` of a model built with a dict of inputs; None for a tensor, a list or no graph.

    Example:

    >>> import keras
    >>> image, scale = keras.Input((2,), name="image"), keras.Input((1,), name="scale")
    >>> sorted(inputs_by_name(keras.Model({"image": image, "scale": scale}, image * scale)))
    ['image', 'scale']
    >>> inputs_by_name(keras.Model(image, image)) is None
    True
    """
    structure = getattr(model, "_inputs_struct", None)
    return dict(structure) if isinstance(structure, dict) else None


def check_is_graph_model(model) -> None:
    if not isinstance(model, keras.Model):
        if isinstance(model, (str, os.PathLike)):
            raise TypeError(
                f"Expected a keras.Model, got {type(model).__name__}, the path {str(model)!r}. Load it first with "
                "keras.saving.load_model(path), or run the keras-logits command line on the file "
                "(keras-logits inspect / expose / export PATH)."
            )
        if any(cls.__module__.split(".")[0] == "tf_keras" for cls in type(model).__mro__):
            raise TypeError(
                f"Model '{getattr(model, 'name', '?')}' is a Keras 2 (tf_keras) {type(model).__name__}; "
                "keras_logits works on Keras 3 models. Save it as .h5 (model.save('model.h5')) and load "
                "that with Keras 3 (keras.saving.load_model('model.h5')), or pass the .h5 file to the "
                "keras-logits command line."
            )
        raise TypeError(
            f"Expected a keras.Model, got {type(model).__name__}. Wrap a layer stack in "
            "keras.Sequential or build a functional model first."
        )
    if isinstance(model, keras.Sequential):
        try:
            model.inputs
        except (AttributeError, ValueError):
            raise ValueError(
                f"Sequential model '{model.name}' has not been built, so it has no graph to "
                "read the head from. Start it with keras.Input(shape=...) or call "
                "model.build((None, *input_shape)) first."
            ) from None
        return
    if not is_graph_model(model):
        raise ValueError(
            f"Model '{model.name}' is a subclassed keras.Model ({type(model).__name__}): its "
            "call() is Python code, so its graph cannot be read or rebuilt. Return both "
            "outputs from call() instead: `return keras_logits.layers.LogitsHead('softmax')"
            "(logits)` where `logits` is the tensor before the activation."
        )


def all_layers(model, *, include_self: bool = False) -> list:
    """Every layer of `model`, nested models' layers included (depth first, as Keras tracks them)."""
    return list(model._flatten_layers(include_self=include_self, recursive=True))


def producing_layer(tensor):
    """The layer (operation) that produced a symbolic `tensor`, or None for a plain value."""
    return operation_of(tensor)[0]


def operation_of(tensor) -> tuple:
    """`(operation, node, index of tensor among the node's outputs)` that computed `tensor`; Nones for a plain value."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, None, 0
    operation, node_index, tensor_index = history
    return operation, operation._inbound_nodes[node_index], tensor_index


def call_arguments(node) -> tuple:
    """`(args, kwargs)` a node's operation was called with (tensors, a mask, flags), as Keras recorded them.

    Example:

    >>> import keras
    >>> scores, mask = keras.Input((3,)), keras.Input((3,), dtype="bool")
    >>> operation, node, index = operation_of(keras.layers.Softmax()(scores, mask=mask))
    >>> args, kwargs = call_arguments(node)
    >>> type(operation).__name__, args[0] is scores, kwargs["mask"] is mask
    ('Softmax', True, True)
    """
    arguments = node.arguments
    return tuple(arguments.args), dict(arguments.kwargs)


def outputs_structure(model):
    """The outputs of `model` in the structure it returns them (a dict, a list or one tensor)."""
    structure = getattr(model, "_outputs_struct", None)
    if structure is None:  # Sequential
        structure = model.outputs[0] if len(model.outputs) == 1 else model.outputs
    return structure

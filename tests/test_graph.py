"""_graph: the one module that reads Keras' private graph attributes; what it reads, checked on real models."""

import pathlib
import re

import keras
from keras import layers

from keras_logits import _graph

PACKAGE = pathlib.Path(_graph.__file__).parent
PRIVATE_GRAPH_ATTRIBUTES = re.compile(
    r"_outputs_struct|_inputs_struct|_flatten_layers|_keras_history|\.arguments\b|_inbound_nodes|operation_index")
def test_only_graph_reads_keras_private_graph_attributes():
    readers = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                     if PRIVATE_GRAPH_ATTRIBUTES.search(path.read_text()))
    assert readers == ["_graph.py"]


def test_operation_of_and_call_arguments_give_the_layer_node_and_its_call():
    scores, mask = keras.Input((3,)), keras.Input((3,), dtype="bool")
    probabilities = layers.Softmax(name="probs")(scores, mask=mask)
    operation, node, index = _graph.operation_of(probabilities)
    args, kwargs = _graph.call_arguments(node)
    assert (operation.name, index, node.output_tensors[index] is probabilities) == ("probs", 0, True)
    assert args[0] is scores and kwargs["mask"] is mask
    assert _graph.operation_of(keras.ops.ones((2,))) == (None, None, 0)  # a plain value has no producer


def test_inputs_by_name_is_the_dict_a_model_was_built_with_and_none_otherwise():
    image, scale = keras.Input((2,), name="image"), keras.Input((1,), name="scale")
    named = keras.Model({"image": image, "scale": scale}, layers.Multiply()([image, layers.Dense(2)(scale)]))
    assert _graph.inputs_by_name(named) == {"image": image, "scale": scale}
    assert _graph.model_inputs(named) == {"image": image, "scale": scale}
    listed = keras.Model([image, scale], layers.Concatenate()([image, scale]))
    assert _graph.inputs_by_name(listed) is None and _graph.model_inputs(listed) == [image, scale]


def test_all_layers_include_nested_models_layers():
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(3, name="inner_dense")], name="inner")
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, layers.Dense(2, name="outer_dense")(inner(inputs)), name="outer")
    names = [layer.name for layer in _graph.all_layers(outer)]
    assert {"inner", "inner_dense", "outer_dense"} <= set(names) and "outer" not in names
    assert "outer" in [layer.name for layer in _graph.all_layers(outer, include_self=True)]

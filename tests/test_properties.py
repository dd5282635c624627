"""Property: on any generated classifier, `expose` returns the right logits or a documented error.

Hypothesis draws a recipe (functional or Sequential; random depth, branches and merges; nested
body or head models; fused or separate softmax/sigmoid, as a layer or a `keras.ops` call;
shape-only layers between the logits and the activation or after it; a second output; mixed
precision). The recipe is built twice: the original, and a reference with the head's
activation left out and the original's weights copied in. Then either

- `expose(original)` gives, for every classification output, logits equal to the reference's
  output and probabilities equal to the original's, or
- it raises one of the documented errors (a message from `find_head`/`expose`): for outputs
  without activation, and outputs computed from the probabilities (a Rescaling after them),

and never anything else. Derandomized, so CI runs the same 200 examples every time; failing
examples found while writing this are kept below as `@example`s.
"""

from __future__ import annotations

import dataclasses
import re

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import keras_logits

EXAMPLES = 200
DOCUMENTED_ERRORS = (
    r"^Cannot find a classification head in model",
    r"has \d+ classification outputs",
)


@dataclasses.dataclass(frozen=True)
class Head:
    classes: int
    activation: str  # "softmax" | "sigmoid"
    style: str  # "fused" | "activation_layer" | "softmax_layer" | "ops" | "no_activation"
    between: tuple  # shape-only layers between logits and a separate activation
    after: tuple  # shape-only layers after the activation, or a Rescaling ("rescale")
    nested: bool  # the head (Dense + activation) sits in its own functional submodel


@dataclasses.dataclass(frozen=True)
class Recipe:
    kind: str  # "functional" | "sequential"
    inputs: int
    body: tuple  # ("dense", units, activation) | ("branch", units, merge)
    nested_body: bool
    head: Head
    second_output: str  # "none" | "regression" | "head"
    mixed_precision: bool


SHAPE_ONLY = ("dropout", "identity", "reshape_same", "gaussian_dropout")


@st.composite
def recipes(draw):
    kind = draw(st.sampled_from(["functional", "sequential"]))
    functional = kind == "functional"
    block = st.tuples(st.just("dense"), st.integers(2, 8), st.sampled_from(["relu", "tanh", "linear"]))
    if functional:
        block = block | st.tuples(st.just("branch"), st.integers(2, 8), st.sampled_from(["add", "concat"]))
    activation = draw(st.sampled_from(["softmax", "sigmoid"]))
    styles = ["fused", "activation_layer"] + (["softmax_layer"] if activation == "softmax" else [])
    styles += ["ops"] if functional else []
    styles += ["no_activation"]  # ends in logits: expose must refuse it (no activation= given)
    style = draw(st.sampled_from(styles))
    between = () if style == "fused" else tuple(draw(st.lists(st.sampled_from(SHAPE_ONLY), max_size=2)))
    head = Head(
        classes=draw(st.integers(1, 6)),
        activation=activation,
        style=style,
        between=between,
        after=tuple(draw(st.lists(st.sampled_from(SHAPE_ONLY + ("reshape_column_flatten", "rescale")), max_size=2))),
        nested=functional and draw(st.booleans()),
    )
    return Recipe(
        kind=kind,
        inputs=draw(st.integers(2, 6)),
        body=tuple(draw(st.lists(block, max_size=3))),
        nested_body=draw(st.booleans()),
        head=head,
        second_output=draw(st.sampled_from(["none", "regression", "head"])) if functional else "none",
        mixed_precision=draw(st.integers(0, 4)) == 0,  # one in five
    )


def _shape_only(name, classes):
    if name == "dropout":
        return [keras.layers.Dropout(0.5)]
    if name == "gaussian_dropout":
        return [keras.layers.GaussianDropout(0.3)]
    if name == "identity":
        return [keras.layers.Identity()]
    if name == "reshape_same":
        return [keras.layers.Reshape((classes,))]
    if name == "rescale":  # not shape-only: the output is computed from the probabilities, so it is no head
        return [keras.layers.Rescaling(0.5)]
    return [keras.layers.Reshape((classes, 1)), keras.layers.Flatten()]


def _apply(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def _head_layers(head: Head, with_activation: bool, prefix: str):
    """Layers (or callables) from features to the head's output."""
    fused = head.style == "fused" and with_activation
    with_activation = with_activation and head.style != "no_activation"
    steps = [keras.layers.Dense(head.classes, activation=head.activation if fused else None,
                                name=f"{prefix}_dense")]
    for name in head.between:
        steps += _shape_only(name, head.classes)
    if with_activation and head.style != "fused":
        if head.style == "activation_layer":
            steps.append(keras.layers.Activation(head.activation, name=f"{prefix}_activation"))
        elif head.style == "softmax_layer":
            steps.append(keras.layers.Softmax(name=f"{prefix}_softmax"))
        else:
            steps.append(keras.ops.softmax if head.activation == "softmax" else keras.ops.sigmoid)
    for name in head.after:
        steps += _shape_only(name, head.classes)
    return steps


def _body(recipe: Recipe, x):
    for number, (kind, units, option) in enumerate(recipe.body):
        if kind == "dense":
            x = keras.layers.Dense(units, activation=option)(x)
        else:
            left = keras.layers.Dense(units, activation="relu")(x)
            right = keras.layers.Dense(units, activation="tanh")(x)
            x = keras.layers.Add()([left, right]) if option == "add" else keras.layers.Concatenate()([left, right])
    return x


def build(recipe: Recipe, with_activation: bool):
    """The recipe's model; `with_activation=False` leaves the main head's activation out."""
    keras.config.set_dtype_policy("mixed_float16" if recipe.mixed_precision else "float32")
    try:
        if recipe.kind == "sequential":
            return _build_sequential(recipe, with_activation)
        return _build_functional(recipe, with_activation)
    finally:
        keras.config.set_dtype_policy("float32")


def _build_sequential(recipe, with_activation):
    body = [keras.layers.Dense(units, activation=option) for _, units, option in recipe.body]
    if recipe.nested_body and body:
        body = [keras.Sequential([keras.Input((recipe.inputs,)), *body], name="body")]
    head = [step for step in _head_layers(recipe.head, with_activation, "main")]
    return keras.Sequential([keras.Input((recipe.inputs,)), *body, *head], name="generated")


def _build_functional(recipe, with_activation):
    inputs = keras.Input((recipe.inputs,), name="x")
    if recipe.nested_body and recipe.body:
        inner = keras.Input((recipe.inputs,))
        features = keras.Model(inner, _body(recipe, inner), name="body")(inputs)
    else:
        features = _body(recipe, inputs)
    if recipe.head.nested:
        inner = keras.Input(tuple(features.shape[1:]))
        head_model = keras.Model(inner, _apply(_head_layers(recipe.head, with_activation, "main"), inner),
                                 name="head_model")
        main = head_model(features)
    else:
        main = _apply(_head_layers(recipe.head, with_activation, "main"), features)
    if recipe.second_output == "none":
        return keras.Model(inputs, main, name="generated")
    if recipe.second_output == "regression":
        second = keras.layers.Dense(1, name="value")(features)
    else:
        second = keras.layers.Dense(3, activation="softmax", name="aux_dense")(features)
    return keras.Model(inputs, {"main": main, "second": second}, name="generated")


def _numpy(value):
    return keras.ops.convert_to_numpy(value).astype("float64")


def not_a_head(head: Head) -> bool:
    """The main output ends in logits, or is computed from the probabilities (Rescaling after the activation)."""
    return head.style == "no_activation" or "rescale" in head.after


def check_recipe(recipe: Recipe):
    original = build(recipe, with_activation=True)
    reference = build(recipe, with_activation=False)
    reference.set_weights(original.get_weights())
    x = np.random.default_rng(0).normal(size=(5, recipe.inputs)).astype("float32")
    try:
        exposed = keras_logits.expose(original)
    except (ValueError, TypeError) as error:
        assert any(re.search(pattern, str(error)) for pattern in DOCUMENTED_ERRORS), repr(error)
        assert not_a_head(recipe.head), f"refused a supported model: {error}"
        if "rescale" in recipe.head.after and recipe.head.style != "no_activation":
            assert "computed from" in str(error) and "no activation= makes them so" in str(error), str(error)
        event(f"documented error: {str(error)[:50]}")
        return
    assert not not_a_head(recipe.head) or recipe.second_output == "head", "exposed a model without head"
    event(f"exposed {recipe.kind}, {recipe.head.style}, second output {recipe.second_output}")
    event(f"body {len(recipe.body)} blocks, nested body {recipe.nested_body}, nested head {recipe.head.nested}, "
          f"mixed precision {recipe.mixed_precision}")
    outputs = {key: _numpy(value) for key, value in exposed(x).items()}
    original_outputs, reference_outputs = original(x), reference(x)
    if not isinstance(original_outputs, dict):
        original_outputs, reference_outputs = {"main": original_outputs}, {"main": reference_outputs}
        prefix = {"main": ""}
    else:
        prefix = {"main": "main/", "second": "second/"}

    loose = recipe.mixed_precision
    if not_a_head(recipe.head):  # only the second head is exposed; main passes through
        assert "main/logits" not in outputs
        np.testing.assert_allclose(outputs["main"], _numpy(original_outputs["main"]), atol=1e-6)
    else:
        logits = reference_outputs["main"]
        scale = max(1.0, float(np.abs(_numpy(logits)).max()))
        np.testing.assert_allclose(outputs[prefix["main"] + "logits"], _numpy(logits),
                                   atol=(2e-3 if loose else 1e-5) * scale)
        np.testing.assert_allclose(outputs[prefix["main"] + "probabilities"], _numpy(original_outputs["main"]),
                                   atol=5e-3 if loose else 1e-6)
    if recipe.second_output == "regression":
        np.testing.assert_allclose(outputs["second"], _numpy(original_outputs["second"]), atol=1e-6)
    elif recipe.second_output == "head":
        np.testing.assert_allclose(outputs["second/probabilities"], _numpy(original_outputs["second"]),
                                   atol=5e-3 if loose else 1e-6)
        probabilities = outputs["second/probabilities"]
        np.testing.assert_allclose(_numpy(keras.ops.softmax(outputs["second/logits"])), probabilities,
                                   atol=5e-3 if loose else 1e-6)
    assert {id(v) for v in original.weights} <= {id(v) for v in exposed.weights}


@pytest.mark.slow
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(recipes())
# Found by hypothesis while this test was written: an output without activation beside a
# classification output is passed through, not refused (the test's expectation was wrong).
@example(Recipe(kind="functional", inputs=2, body=(), nested_body=False,
                head=Head(classes=1, activation="softmax", style="no_activation", between=(), after=(), nested=False),
                second_output="head", mixed_precision=False))
# Mixed precision with a nested head behind shape-only layers on both sides of the activation.
@example(Recipe(kind="functional", inputs=3, body=(("branch", 4, "concat"),), nested_body=True,
                head=Head(classes=4, activation="softmax", style="activation_layer",
                          between=("reshape_same", "dropout"), after=("reshape_column_flatten",), nested=True),
                second_output="regression", mixed_precision=True))
def test_expose_is_right_or_raises_a_documented_error(recipe):
    check_recipe(recipe)

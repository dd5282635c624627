"""The rows of the kinds x consumers matrix (tests/test_matrix.py): every kind of model the package accepts or makes.

Each kind builds the model and, with `linear=True`, a twin of it whose output is the same head without its
activation (the independent reference for the logits, once it has the model's weights).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import keras
import numpy as np

import keras_logits

NUM_CLASSES = 4
BATCH = 8
SCRATCH = {}  # the module fixture's temporary directory, for kinds that go through files


@dataclasses.dataclass
class Kind:
    """One row of the matrix.

    `build(linear)` returns the model, or with `linear=True` its no-activation twin (same weights order).
    `given_activation` is set for models whose output already is logits (the consumers that take
    `activation=` get it); `head` is the output to pick on multi-head models; `temperature` divides the
    twin's logits where a temperature is baked in; `masked` kinds compare only positions the mask keeps.
    """

    build: Callable
    inputs: Callable
    activation: str = "softmax"
    given_activation: Optional[str] = None
    head: Optional[str] = None
    temperature: float = 1.0
    masked: bool = False
    exposed: bool = False
    own_output: str = "probabilities"  # what the model's own predict returns (a logits_model: "logits")
    needs: Optional[str] = None  # an optional package; the row is skipped with the reason without it


def features(shape=(6,)):
    return lambda rng: rng.normal(size=(BATCH, *shape)).astype("float32")


def _trunk(inputs):
    return keras.layers.Dense(8, activation="relu", name="trunk")(inputs)


def _activation(linear, activation="softmax"):
    return None if linear else activation


def fused(linear):
    inputs = keras.Input((6,), name="x")
    outputs = keras.layers.Dense(NUM_CLASSES, activation=_activation(linear), name="classifier")(_trunk(inputs))
    return keras.Model(inputs, outputs, name="fused")


def separate(linear):
    inputs = keras.Input((6,), name="x")
    scores = keras.layers.Dense(NUM_CLASSES, name="scores")(_trunk(inputs))
    return keras.Model(inputs, scores if linear else keras.layers.Activation("softmax", name="act")(scores),
                       name="separate")


def softmax_layer(linear):
    inputs = keras.Input((6,), name="x")
    scores = keras.layers.Dense(NUM_CLASSES, name="scores")(_trunk(inputs))
    return keras.Model(inputs, scores if linear else keras.layers.Softmax(name="softmax")(scores),
                       name="softmax_layer")


def ops_softmax(linear):
    inputs = keras.Input((6,), name="x")
    scores = keras.layers.Dense(NUM_CLASSES, name="scores")(_trunk(inputs))
    return keras.Model(inputs, scores if linear else keras.ops.softmax(scores), name="ops_softmax")


def binary(linear):
    inputs = keras.Input((6,), name="x")
    outputs = keras.layers.Dense(1, activation=_activation(linear, "sigmoid"), name="classifier")(_trunk(inputs))
    return keras.Model(inputs, outputs, name="binary")


def multi_label(linear):
    inputs = keras.Input((6,), name="x")
    outputs = keras.layers.Dense(NUM_CLASSES, activation=_activation(linear, "sigmoid"), name="tags")(
        _trunk(inputs))
    return keras.Model(inputs, outputs, name="multi_label")


def nested_backbone(linear):
    backbone = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu")], name="backbone")
    return keras.Sequential([keras.Input((6,), name="x"), backbone,
                             keras.layers.Dense(NUM_CLASSES, activation=_activation(linear), name="classifier")],
                            name="nested_backbone")


def nested_head(linear):
    head = keras.Sequential([keras.Input((8,)), keras.layers.Dropout(0.1),
                             keras.layers.Dense(NUM_CLASSES, activation=_activation(linear), name="classifier")],
                            name="head_model")
    return keras.Sequential([keras.Input((6,), name="x"), keras.layers.Dense(8, activation="relu"), head],
                            name="nested_head")


def multi_head(linear):
    inputs = keras.Input((6,), name="x")
    trunk = _trunk(inputs)
    kind = keras.layers.Dense(NUM_CLASSES, activation=_activation(linear), name="kind")(trunk)
    tags = keras.layers.Dense(3, activation="sigmoid", name="tags")(trunk)
    if linear:
        return keras.Model(inputs, kind, name="multi_head_twin")
    return keras.Model(inputs, {"kind": kind, "tags": tags}, name="multi_head")


def multi_input(linear):
    left, right = keras.Input((6,), name="left"), keras.Input((3,), name="right")
    merged = keras.layers.Concatenate()([_trunk(left), right])
    outputs = keras.layers.Dense(NUM_CLASSES, activation=_activation(linear), name="classifier")(merged)
    return keras.Model([left, right], outputs, name="multi_input")


def mixed_precision(linear):
    if linear:  # the reference twin computes in float32
        return fused(linear)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        return fused(linear)
    finally:
        keras.config.set_dtype_policy("float32")


def with_logits_head(linear):
    inputs = keras.Input((6,), name="x")
    logits = keras.layers.Dense(NUM_CLASSES, name="scores")(_trunk(inputs))
    if linear:
        return keras.Model(inputs, logits, name="logits_head_twin")
    return keras.Model(inputs, keras_logits.LogitsHead("softmax")(logits), name="with_logits_head")


def exposed(linear):
    model = fused(linear)
    return model if linear else keras_logits.expose(model)


def exposed_by_cli_and_reloaded(linear):
    model = fused(linear)
    if linear:
        return model
    from keras_logits.cli import main

    original, path = (os.path.join(SCRATCH["root"], name) for name in ("original.keras", "exposed_by_cli.keras"))
    model.save(original)
    assert main(["expose", original, path]) == 0
    return keras.saving.load_model(path, safe_mode=True)


def temperature_baked_in(linear):
    model = fused(linear)
    return model if linear else keras_logits.expose(model, temperature=2.0)


def segmentation(linear):
    inputs = keras.Input((6, 6, 2), name="image")
    hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(NUM_CLASSES, 1, activation=_activation(linear), name="pixels")(hidden)
    return keras.Model(inputs, outputs, name="segmentation")


def tokens(rng):
    ids = rng.integers(1, 20, size=(BATCH, 5))
    ids[::2, 3:] = 0  # padding at the end of every other sequence
    return ids.astype("int32")


def masked_tagger(linear):
    inputs = keras.Input((5,), dtype="int32", name="tokens")
    hidden = keras.layers.Embedding(20, 8, mask_zero=True)(inputs)
    hidden = keras.layers.Dense(8, activation="relu")(hidden)
    outputs = keras.layers.Dense(NUM_CLASSES, activation=_activation(linear), name="tags")(hidden)
    return keras.Model(inputs, outputs, name="tagger")


def time_distributed(linear):
    inputs = keras.Input((5, 6), name="steps")
    dense = keras.layers.Dense(NUM_CLASSES, activation=_activation(linear), name="tags")
    return keras.Model(inputs, keras.layers.TimeDistributed(dense, name="per_step")(inputs), name="td_tagger")


def logits_only(linear):
    model = fused(linear)
    return model if linear else keras_logits.logits_model(model)


def plain_logits(linear):
    return fused(True)  # ends in a Dense without activation: the model is its own no-activation twin


def hub_image_classifier(linear):
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
        stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block",
        use_pre_activation=False, image_shape=(16, 16, 3),
    )
    converter = keras_hub.layers.ResNetImageConverter(image_size=(16, 16), scale=1 / 255.0)
    preprocessor = keras_hub.models.ResNetImageClassifierPreprocessor(image_converter=converter)
    return keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=NUM_CLASSES,
                                                  preprocessor=preprocessor, activation=_activation(linear))


def raw_images(rng):
    # 0..255 pixels larger than the backbone's 16 x 16: task.predict resizes and rescales them.
    return rng.integers(0, 256, size=(BATCH, 24, 20, 3)).astype("float32")


KINDS = {
    "fused_dense": Kind(fused, features()),
    "separate_activation": Kind(separate, features()),
    "softmax_layer": Kind(softmax_layer, features()),
    "ops_softmax": Kind(ops_softmax, features()),
    "sigmoid_binary": Kind(binary, features(), activation="sigmoid"),
    "sigmoid_multi_label": Kind(multi_label, features(), activation="sigmoid"),
    "nested_backbone": Kind(nested_backbone, features()),
    "head_in_nested_model": Kind(nested_head, features()),
    "multi_head": Kind(multi_head, features(), head="kind"),
    "multi_input": Kind(multi_input, lambda rng: [features()(rng), features((3,))(rng)]),
    "mixed_precision": Kind(mixed_precision, features()),
    "built_with_logits_head": Kind(with_logits_head, features()),
    "exposed": Kind(exposed, features(), exposed=True),
    "exposed_by_cli_and_reloaded": Kind(exposed_by_cli_and_reloaded, features(), exposed=True),
    "temperature_baked_in": Kind(temperature_baked_in, features(), temperature=2.0, exposed=True),
    "segmentation": Kind(segmentation, features((6, 6, 2))),
    "masked_token_tagger": Kind(masked_tagger, tokens, masked=True),
    "time_distributed_tagger": Kind(time_distributed, features((5, 6))),
    "logits_model": Kind(logits_only, features(),
                         own_output="logits"),
    "plain_logits_with_activation_given": Kind(plain_logits, features(), given_activation="softmax",
                                               own_output="logits"),
    "keras_hub_image_classifier": Kind(hub_image_classifier, raw_images, needs="keras_hub"),
}


def numpy_activation(logits, activation):
    logits = np.asarray(logits, dtype="float64")
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)

"""KerasHub task models: fold an image preprocessor into the graph, or refuse and say what to pass.

A KerasHub task (`keras_hub.models.ImageClassifier`, `TextClassifier`, ...)
applies its `preprocessor` in `predict`, outside its functional graph. Exposing
or exporting that graph alone would take inputs the user never sees
(resized, rescaled images; token ids) and answer differently from
`task.predict(raw)`. `expose` calls `fold_preprocessor` first:

- an image classifier whose preprocessor is KerasHub's own
  `ImageClassifierPreprocessor` with an `ImageConverter` (resize, scale,
  offset) gets the same steps as plain Keras layers in front of its graph;
- any other preprocessor (string tokenizers, audio, custom classes) is
  refused, naming `without_preprocessor(task)`, which takes preprocessed
  inputs (what `task.preprocessor(raw)` returns).

KerasHub is imported only when a model comes from it.
"""

from __future__ import annotations

import sys

import keras

from keras_logits._graph import model_inputs, outputs_structure


def fold_preprocessor(model: keras.Model) -> keras.Model:
    """Returns `model`, or for a KerasHub task with a preprocessor, one model that takes raw inputs.

    The returned functional model applies the task's image converter
    (resizing, then `x * scale + offset`, as `ImageConverter` does) as plain
    Keras layers and then calls the task's own graph, sharing its weights, so
    its `predict(raw)` equals `task.predict(raw)`. A task without a
    preprocessor (`preprocessor=None`) and any model that is not a KerasHub
    task are returned as they are.

    Raises:
        ValueError: the preprocessor cannot be folded (a tokenizer, or a class
            whose computation this package cannot prove equal).

    Example:

    >>> import keras, keras_logits
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> keras_logits.hub.fold_preprocessor(model) is model
    True
    """
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None or not _is_keras_hub_task(model):
        return model
    converter = _foldable_image_converter(model, preprocessor)
    return _with_image_converter(model, converter)


def without_preprocessor(task: keras.Model) -> keras.Model:
    """Returns a KerasHub task's graph without its preprocessor: it takes preprocessed inputs.

    The explicit opt-in for tasks whose preprocessor cannot be folded
    (tokenizers): expose or export the returned model and feed it
    `task.preprocessor(raw)`. It shares the task's layers and weights.

    Example:

    >>> import keras, keras_logits
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> graph = keras_logits.hub.without_preprocessor(model)
    >>> graph.layers[-1] is model.layers[-1]
    True
    """
    if not isinstance(task, keras.Model):
        raise TypeError(f"Expected a KerasHub task (a keras.Model), got {type(task).__name__}.")
    return keras.Model(model_inputs(task), outputs_structure(task), name=task.name)


def _is_keras_hub_task(model) -> bool:
    if "keras_hub" not in sys.modules:  # nothing from KerasHub can exist yet
        return False
    import keras_hub

    return isinstance(model, keras_hub.models.Task)


def _foldable_image_converter(task, preprocessor):
    """The task's ImageConverter, when its preprocessing is exactly KerasHub's converter; else refuses."""
    import keras_hub

    ImageConverter = keras_hub.layers.ImageConverter
    ImageClassifierPreprocessor = keras_hub.models.ImageClassifierPreprocessor

    converter = getattr(preprocessor, "image_converter", None)
    # Only KerasHub's own code is provably `resize -> * scale -> + offset`; a subclass that overrides a step
    # could compute anything.
    same_preprocessing = (
        isinstance(preprocessor, ImageClassifierPreprocessor)
        and type(preprocessor).call is ImageClassifierPreprocessor.call
        and isinstance(converter, ImageConverter)
        and all(getattr(type(converter), name) is getattr(ImageConverter, name)
                for name in ("call", "_call_python", "_expand_non_channel_dims"))
    )
    if not same_preprocessing or len(task.inputs) != 1:
        raise ValueError(_refusal(task, preprocessor, keras_hub))
    if converter.data_format != "channels_last" and _per_channel(converter):
        raise ValueError(
            f"The image converter of KerasHub task '{task.name}' has per-channel scale/offset on "
            "channels_first images, which keras_logits does not fold. Use "
            "keras_logits.hub.without_preprocessor(task) and feed task.preprocessor(images)."
        )
    return converter


def _refusal(task, preprocessor, keras_hub) -> str:
    kind = type(preprocessor).__name__
    tokenizer = getattr(preprocessor, "tokenizer", None)
    if isinstance(tokenizer, keras_hub.tokenizers.Tokenizer):
        what = (f"turns strings into token ids with its tokenizer ({type(tokenizer).__name__}), which is not "
                "a Keras layer graph and cannot be folded into the model")
    else:
        what = "is not a KerasHub image converter that keras_logits can fold into the model"
    return (
        f"KerasHub task '{task.name}' applies its preprocessor '{preprocessor.name}' ({kind}) in predict(); it "
        f"{what}, and exposing the task's graph alone would answer differently from task.predict(raw). "
        "Pass keras_logits.hub.without_preprocessor(task) instead (it shares the weights) and feed it "
        "task.preprocessor(raw) (the preprocessed inputs)."
    )


def _per_channel(converter) -> bool:
    return any(isinstance(value, (list, tuple)) for value in (converter.scale, converter.offset))


def _with_image_converter(task, converter) -> keras.Model:
    """Raw images -> the converter's steps as Keras layers -> the task's graph."""
    (image_input,) = task.inputs
    shape = tuple(image_input.shape[1:])
    if converter.image_size is not None:
        # Resizing accepts any image size, as task.predict does.
        channel_axis = 0 if converter.data_format == "channels_first" else -1
        shape = tuple(size if axis == channel_axis % len(shape) else None for axis, size in enumerate(shape))
    images = keras.Input(shape, name=f"{task.name}_images")
    x = images
    if converter.image_size is not None:
        config = dict(converter.resizing.get_config(), name=f"{task.name}_resizing")
        # Keras' image preprocessing layers default to training=True in call(); without an explicit False, a
        # direct call of the model (no training=) would run the task's BatchNormalization in training mode and
        # update its moving statistics. fit() still passes training=True, which Resizing ignores.
        x = keras.layers.Resizing.from_config(config)(x, training=False)
    if converter.scale is not None or converter.offset is not None:
        # ImageConverter multiplies, then adds, in its compute dtype; Rescaling does the same.
        x = keras.layers.Rescaling(
            _as_float(converter.scale, 1.0), _as_float(converter.offset, 0.0),
            dtype=converter.dtype_policy, name=f"{task.name}_rescaling",
        )(x)
    return keras.Model(images, task(x), name=task.name)


def _as_float(value, default):
    if value is None:
        return default
    if isinstance(value, (list, tuple)):
        return [float(item) for item in value]
    return float(value)

"""`LogitsLogger`'s probe forward pass: the model it runs (logits, probabilities, mask) and one call per epoch."""

from __future__ import annotations

import warnings

import keras
import numpy as np

from keras_logits._distribution import (batch_multiple, is_distributed, predict_across_processes, process_count,
                                       take_rows)
from keras_logits._expose import LOGITS, PROBABILITIES, ensure_exposed
from keras_logits._graph import model_inputs, model_outputs

MASK = "mask"


def logged_model(model, *, head=None, activation=None) -> tuple:
    """`(classifier, its exposed model, head)`: `model`, or the student of a `keras.distillation.Distiller`.

    A Distiller's `call` is its student's; its teacher is frozen. The probe
    runs the student (exposed: it shares the student's weights).
    """
    distiller = getattr(getattr(keras, "distillation", None), "Distiller", None)
    if distiller is None or not isinstance(model, distiller):
        return (model, *ensure_exposed(model, head=head, activation=activation))
    student = model.student
    try:
        return (student, *ensure_exposed(student, head=head, activation=activation))
    except (ValueError, TypeError) as error:
        raise type(error)(
            f"LogitsLogger on Distiller '{model.name}' logs its student '{student.name}', which it cannot "
            f"expose: {error} (For a student that outputs logits, build it with "
            "keras_logits.logits_model(classifier), which records its activation, or pass "
            "LogitsLogger(activation='softmax' or 'sigmoid').)"
        ) from None


def build_probe_model(classifier, exposed, head, model_name: str):
    """The exposed model with the logits' Keras mask as a third output, when the head has one.

    Built once: the mask comes from the same forward pass as the logits.
    """
    outputs = model_outputs(exposed)
    logits = outputs[LOGITS]
    axis = head.axis if head.axis is not None else -1
    if axis not in (-1, len(logits.shape) - 1):
        raise ValueError(
            f"LogitsLogger: the head of model '{model_name}' normalises over axis {axis}, not the last "
            "axis; put the classes last (e.g. data_format='channels_last') to log it."
        )
    mask = getattr(logits, "_keras_mask", None)
    if mask is None:
        mask = getattr(outputs[PROBABILITIES], "_keras_mask", None)
    if mask is None and classifier is not exposed:
        # An exposed head that drops the mask: the original output's mask, computed from the same inputs.
        original = model_outputs(classifier).get(head.output_name)
        mask = getattr(original, "_keras_mask", None)
        if mask is not None and not all(a is b for a, b in zip(classifier.inputs, exposed.inputs)):
            warnings.warn(f"LogitsLogger cannot compute the Keras mask of model '{model_name}' beside the "
                          "logits; masked (padding) positions count in the probe summaries.", stacklevel=4)
            mask = None
    if mask is None or len(mask.shape) >= len(logits.shape) > 1:
        # No mask, or one over the classes (a pointer head): its logits are already masked, no position is.
        return exposed
    return keras.Model(model_inputs(exposed), {LOGITS: logits, PROBABILITIES: outputs[PROBABILITIES], MASK: mask})


class ProbeForward:
    """The probe's forward pass, built once per fit; calling it returns the outputs as NumPy.

    On JAX (one process, no distribution) it is a `jax.jit` of the model's
    `stateless_call` over the current variable values: no per-call state
    gathering and write-back as in `predict_on_batch`, and one device-to-host
    copy of all chunks. Elsewhere it is `predict_probe`.
    """

    def __init__(self, model, feed, count: int, batch_size: int):
        self._model, self._feed, self._count, self._batch_size = model, feed, count, batch_size
        self._jitted = None
        if keras.backend.backend() == "jax" and process_count() == 1 and not is_distributed(model):
            import jax

            self._jitted = jax.jit(lambda trainable, non_trainable, x: model.stateless_call(
                trainable, non_trainable, x, training=False)[0])

    def __call__(self) -> dict:
        if self._jitted is None:
            return predict_probe(self._model, self._feed, self._count, self._batch_size)
        import jax

        trainable = [variable.value for variable in self._model.trainable_variables]
        non_trainable = [variable.value for variable in self._model.non_trainable_variables]
        chunks = jax.device_get([self._jitted(trainable, non_trainable, take_rows(self._feed, start,
                                                                                   start + self._batch_size))
                                 for start in range(0, self._count, self._batch_size)])
        return {key: np.concatenate([np.asarray(chunk[key]) for chunk in chunks]) for key in chunks[0]}


def predict_probe(model, feed, count: int, batch_size: int) -> dict:
    """One compiled forward pass over the probe, in fixed-size chunks, as NumPy: one host copy per output.

    `predict_on_batch` reuses the model's compiled predict function (built
    once, by the first call) and skips the data-adapter set-up `predict` pays
    on every call; the chunk shapes repeat each epoch, so nothing is retraced
    after the first. Distributed models use `predict`, which splits batches
    over replicas; multi-process JAX gathers every process's share.
    """
    if process_count() > 1:
        return predict_across_processes(model, feed, batch_size)
    if is_distributed(model):
        # Keras' JAX distribution needs batches divisible by the devices on the batch axis:
        # pad with zeros, then drop the padded rows' outputs.
        multiple = batch_multiple()
        padded = take_rows(feed, 0, count, pad_to=count + -count % multiple)
        outputs = model.predict(padded, batch_size=-(-batch_size // multiple) * multiple, verbose=0)
        return {key: np.asarray(value)[:count] for key, value in outputs.items()}
    if count <= batch_size:
        return {key: np.asarray(value) for key, value in model.predict_on_batch(feed).items()}
    chunks = [model.predict_on_batch(take_rows(feed, start, start + batch_size))
              for start in range(0, count, batch_size)]
    return {key: np.concatenate([np.asarray(chunk[key]) for chunk in chunks]) for key in chunks[0]}

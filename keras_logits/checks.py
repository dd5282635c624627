"""`check_model`: the classic output-activation / loss mismatches, found before training.

| code                     | what                                                        | severity |
|--------------------------|-------------------------------------------------------------|----------|
| `double-activation`      | softmax/sigmoid output, loss with `from_logits=True`        | error    |
| `logits-as-probabilities`| linear output, cross-entropy with `from_logits=False`       | error    |
| `softmax-multilabel`     | softmax output with binary cross-entropy (or multi-hot labels) | error if labels are multi-hot, else warning |
| `sigmoid-categorical`    | sigmoid output with (sparse) categorical cross-entropy      | error    |
| `single-unit-softmax`    | softmax over one unit: always 1.0, learns nothing           | error    |
| `output-from-probabilities` | output computed from a softmax/sigmoid further up (ensemble average, rescaling, class priors) | error |

Each `Finding` says what was found and the fix. `LogitsLogger` runs the check
when training starts and warns with every finding.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import numpy as np

from keras_logits._diagnosis import output_activations, outputs_from_probabilities

ERROR, WARNING = "error", "warning"

# Keras loss class / function name -> (family, default from_logits).
_LOSS_FAMILIES = {
    "categoricalcrossentropy": "categorical",
    "categorical_crossentropy": "categorical",
    "categoricalfocalcrossentropy": "categorical",
    "categorical_focal_crossentropy": "categorical",
    "sparsecategoricalcrossentropy": "sparse_categorical",
    "sparse_categorical_crossentropy": "sparse_categorical",
    "binarycrossentropy": "binary",
    "binary_crossentropy": "binary",
    "binaryfocalcrossentropy": "binary",
    "binary_focal_crossentropy": "binary",
}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem `check_model` found.

    Attributes:
        code: A stable identifier, e.g. `"double-activation"`.
        severity: `"error"` (training is wrong) or `"warning"` (probably wrong).
        output: The model output concerned.
        message: What was found.
        fix: What to do about it.
    """

    code: str
    severity: str
    output: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.severity}] {self.code} (output '{self.output}'): {self.message} Fix: {self.fix}"


class ModelCheckWarning(UserWarning):
    """Warned by `LogitsLogger` for each `check_model` finding."""


def check_model(model, loss=None, *, labels=None) -> list:
    """Finds activation/loss mismatches in a (compiled) classifier.

    Args:
        model: A functional or Sequential model, original or exposed.
        loss: The loss to check against (default: the one `model` was compiled
            with). A single loss, a list in output order or a dict by output name.
        labels: Optional training labels of a single-output model, to tell
            multi-hot (multi-label) targets.

    Returns:
        A list of `Finding`, empty when nothing is wrong.

    Example:

    >>> import keras, keras_logits
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> [finding.code for finding in keras_logits.check_model(model)]
    ['double-activation']
    """
    if _is_distiller(model):
        return check_distiller(model)
    activations = output_activations(model)
    losses = _losses_by_output(loss if loss is not None else getattr(model, "loss", None), list(activations))
    multi_hot = labels is not None and _is_multi_hot(labels)
    findings = []
    for output, (activation, units) in activations.items():
        family, from_logits = _describe_loss(losses.get(output))
        findings.extend(_check_output(output, activation, units, family, from_logits, multi_hot))
    for output, upstream in outputs_from_probabilities(model).items():
        findings.append(Finding(
            "output-from-probabilities", ERROR, output,
            f"The output is computed from {', '.join(upstream)} further up: it is neither logits nor the "
            "probabilities of a head, so no loss, from_logits setting or activation= makes it one.",
            "Train and expose the member models (keras_logits.expose(member)), make a member's probabilities "
            "a model output and pick it with head=<output>, or end the model before the combination."))
    return findings


def _check_output(output, activation, units, family, from_logits, multi_hot):
    found = []

    def add(code, severity, message, fix):
        found.append(Finding(code, severity, output, message, fix))

    if activation == "softmax" and units == 1:
        add("single-unit-softmax", ERROR,
            "The output is a softmax over a single unit: it is 1.0 for every input, so the model cannot learn.",
            "Use Dense(1, activation='sigmoid') with binary cross-entropy, or Dense(2, activation='softmax').")
    if activation in ("softmax", "sigmoid") and family is not None and from_logits:
        add("double-activation", ERROR,
            f"The output already applies {activation}, and the loss has from_logits=True, so the loss "
            f"applies {activation} a second time: gradients shrink and the loss is wrong.",
            f"Set from_logits=False, or better, train keras_logits.expose(model) with the loss on 'logits' "
            "(from_logits=True) for numerically stable training.")
    if activation == "linear" and family is not None and not from_logits:
        add("logits-as-probabilities", ERROR,
            "The output is linear (logits), but the loss has from_logits=False and takes it for probabilities.",
            "Set from_logits=True in the loss.")
    if activation == "softmax" and (multi_hot or family == "binary"):
        why = ("The labels are multi-hot (several classes per sample), but softmax makes the classes compete"
               if multi_hot else
               "The output is softmax, trained with binary cross-entropy: if a sample can have several labels, "
               "softmax makes them compete")
        add("softmax-multilabel", ERROR if multi_hot else WARNING, why + ".",
            "For multi-label targets use activation='sigmoid' with binary cross-entropy; for one class per "
            "sample keep softmax and use (sparse) categorical cross-entropy.")
    if activation == "sigmoid" and family in ("categorical", "sparse_categorical"):
        add("sigmoid-categorical", ERROR,
            f"The output is sigmoid, but the loss is {family} cross-entropy, which expects a softmax "
            "distribution over the classes.",
            "For one class per sample use activation='softmax'; for binary / multi-label targets use binary "
            "cross-entropy.")
    return found


def _losses_by_output(loss, outputs: list) -> dict:
    if loss is None:
        return {}
    if isinstance(loss, dict):
        return dict(loss)
    if isinstance(loss, (list, tuple)):
        return dict(zip(outputs, loss))
    return {output: loss for output in outputs}


def _describe_loss(loss):
    """(cross-entropy family or None, from_logits) of a Keras loss object, name or function."""
    if loss is None:
        return None, False
    if isinstance(loss, str):
        return _LOSS_FAMILIES.get(loss.lower()), False
    if isinstance(loss, functools.partial):
        family, from_logits = _describe_loss(loss.func)
        return family, bool(loss.keywords.get("from_logits", from_logits))
    if not hasattr(loss, "get_config"):  # a loss function: keras.losses.binary_crossentropy, ...
        return _LOSS_FAMILIES.get(getattr(loss, "__name__", "").lower()), False
    try:
        config = loss.get_config() or {}
    except (NotImplementedError, TypeError):
        config = {}
    # A Loss subclass by its class name; a custom LossFunctionWrapper by the function it wraps.
    family = _LOSS_FAMILIES.get(type(loss).__name__.lower())
    if family is None and getattr(loss, "fn", None) is not None:
        family = _LOSS_FAMILIES.get(getattr(loss.fn, "__name__", "").lower())
    return family, bool(config.get("from_logits", False))


def _is_multi_hot(labels) -> bool:
    labels = np.asarray(labels)
    if labels.ndim < 2 or labels.shape[-1] < 2 or labels.dtype.kind not in "biuf":
        return False
    return bool(np.any((labels.reshape(-1, labels.shape[-1]) > 0.5).sum(axis=1) > 1))


def check_distiller(distiller) -> list:
    """Finds the silent mistakes of a `keras.distillation.Distiller`; `check_model(distiller)` calls it.

    | code                         | what                                                        | severity |
    |------------------------------|-------------------------------------------------------------|----------|
    | `distillation-probabilities` | teacher or student outputs softmax/sigmoid, logits expected | error    |
    | `distillation-loss`          | `LogitsDistillation` loss not a `KLDivergence` instance     | error    |

    The student's own loss (the `compile(loss=...)` of the distiller) is
    checked against the student's output as `check_model` does.

    Example:

    >>> import keras, keras_logits
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> distiller = keras.distillation.Distiller(
    ...     teacher, student, keras.distillation.LogitsDistillation(temperature=3.0))
    >>> sorted({finding.code for finding in keras_logits.check_model(distiller)})
    ['distillation-loss', 'distillation-probabilities']
    """
    import keras

    from keras_logits.distillation import KLDistillation

    logits_losses = [loss for loss in distiller.distillation_losses
                     if isinstance(loss, (keras.distillation.LogitsDistillation, KLDistillation))]
    findings = []
    if logits_losses:
        for role, model in (("teacher", distiller.teacher), ("student", distiller.student)):
            findings.extend(_probability_outputs(role, model, type(logits_losses[0]).__name__))
    for loss in logits_losses:
        if isinstance(loss, keras.distillation.LogitsDistillation):
            findings.extend(_logits_distillation_loss_findings(loss))
    student_loss = getattr(distiller, "_student_loss_for_serialization", None)
    if student_loss is not None and distiller.student_loss_weight > 0 and _is_graph_model(distiller.student):
        findings.extend(dataclasses.replace(finding, message=f"Student: {finding.message}")
                        for finding in check_model(distiller.student, loss=student_loss))
    return findings


def _is_distiller(model) -> bool:
    import keras

    distillation = getattr(keras, "distillation", None)
    return distillation is not None and isinstance(model, distillation.Distiller)


def _is_graph_model(model) -> bool:
    try:
        output_activations(model)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def _probability_outputs(role: str, model, loss_name: str) -> list:
    if not _is_graph_model(model):
        return []
    found = []
    for output, (activation, _) in output_activations(model).items():
        if activation not in ("softmax", "sigmoid"):
            continue
        extra = (" and compile the Distiller with a from_logits=True student loss; the original student, with "
                 "its activation, is the model that gets trained") if role == "student" else ""
        found.append(Finding(
            "distillation-probabilities", ERROR, output,
            f"The {role} '{model.name}' outputs {activation} probabilities, but {loss_name} expects logits: it "
            "divides them by the temperature, which does not soften probabilities (with the default loss, T only "
            "rescales a T = 1 KL), and a KLDivergence loss then applies softmax to probabilities, a wrong target; "
            "no error is raised.",
            f"Pass keras_logits.logits_model({role}) as the {role} (it shares the weights){extra}."))
    return found


def _logits_distillation_loss_findings(distillation) -> list:
    import keras

    found = []
    for loss in keras.tree.flatten(distillation.loss):
        if loss is None or isinstance(loss, keras.losses.KLDivergence):
            continue
        name = getattr(loss, "__name__", None) or type(loss).__name__
        default = " (its default loss='kl_divergence' resolves to this function)" if name == "kl_divergence" else ""
        found.append(Finding(
            "distillation-loss", ERROR, "distillation",
            f"LogitsDistillation's loss is {name}{default}: Keras applies it to the temperature-scaled logits "
            "themselves, without a softmax, so it is not KL between the tempered distributions (teacher "
            "[2, 0.5, -1], student [0.1, 0.2, 0.3], T=2: the default gives 3.22, the textbook KL x T^2 0.75).",
            f"Use keras_logits.distillation.KLDistillation(temperature={distillation.temperature}) "
            "(activation='sigmoid' for multi-label heads), or "
            f"LogitsDistillation({distillation.temperature}, loss=keras.losses.KLDivergence()) for softmax heads."))
    return found

"""Knowledge distillation from any supported classifier: logits-only models and a loss right by default.

Keras' `keras.distillation.Distiller` with `LogitsDistillation` divides the
teacher's and the student's outputs by the temperature and applies a softmax:
both must output logits. Most classifiers fuse their softmax into the last
`Dense`, so passing them as they are distils softmax-of-probabilities.
`logits_model` gives each a logits output that shares its weights, and
`KLDistillation` is the textbook loss (Hinton et al., 2015, "Distilling the
Knowledge in a Neural Network"), for softmax and sigmoid heads:

    distiller = keras.distillation.Distiller(
        teacher=keras_logits.logits_model(teacher),
        student=keras_logits.logits_model(student),
        distillation_losses=keras_logits.distillation.KLDistillation(temperature=3.0),
    )
    distiller.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(x, y)      # trains `student` itself: the weights are shared
"""

from __future__ import annotations

from typing import Optional

import keras

from keras_logits._expose import LOGITS, PROBABILITIES, expose
from keras_logits._graph import model_outputs
from keras_logits.head import find_head
from keras_logits.layers import Logits

_ACTIVATIONS = ("softmax", "sigmoid")
# keras.distillation arrived in Keras 3.12; logits_model and distillation_loss work without it.
_DistillationLoss = getattr(getattr(keras, "distillation", None), "DistillationLoss", object)


def logits_model(model: keras.Model, *, activation: Optional[str] = None, head: Optional[str] = None) -> keras.Model:
    """Returns a model with one output, `model`'s logits, sharing `model`'s weights.

    Built through `expose`, so every model `expose` accepts works (fused or
    separate activations, nested heads, per-position heads, KerasHub tasks
    with a foldable preprocessor). Training it trains `model`. It saves and
    loads as `.keras` with `safe_mode=True`. It ends in a `layers.Logits`
    layer (the identity) that records the activation, so every part of the
    package takes it without `activation=`: `expose(logits_model(model))`
    gives the probabilities of `model`.

    Args:
        model: A functional or Sequential classifier.
        activation: `"softmax"` or `"sigmoid"` when `model` outputs logits
            already (then the model's graph is reused as it is).
        head: For a model with several classification outputs, the one to take.

    Returns:
        A functional `keras.Model` named `"<model name>_logits"`.

    Example:

    >>> import keras, numpy as np, keras_logits
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> logits = keras_logits.logits_model(model).predict(np.ones((1, 4)), verbose=0)
    >>> bool(np.allclose(keras.ops.softmax(logits), model.predict(np.ones((1, 4)), verbose=0), atol=1e-6))
    True
    """
    exposed = expose(model, activation=activation, head=head)
    outputs = model_outputs(exposed)
    if LOGITS not in outputs:
        choices = sorted(key[: -len("/logits")] for key in outputs if key.endswith("/logits"))
        raise ValueError(
            f"Model '{model.name}' has {len(choices)} classification outputs {choices}; a logits model has one. "
            "Pick it with head=<name> (a distiller with several outputs takes one logits_model per output "
            "and a Distiller per pair, or your own functional model of several logits_model outputs)."
        )
    found = find_head(exposed, output=PROBABILITIES)
    logits = Logits(found.activation, name=f"{found.logits_layer.name}_{found.activation}_logits")(outputs[LOGITS])
    return keras.Model(exposed.inputs[0] if len(exposed.inputs) == 1 else exposed.inputs, logits,
                       name=f"{model.name}_logits")


def distillation_loss(teacher_logits, student_logits, *, temperature: float = 1.0, activation: str = "softmax"):
    """KL(teacher || student) of the tempered distributions, times `temperature**2`, averaged over samples.

    softmax: `T^2 * mean_i sum_c p_ic (log p_ic - log q_ic)` with
    `p = softmax(teacher / T)`, `q = softmax(student / T)` over the last axis,
    computed from log-softmax (finite for saturated logits). sigmoid
    (binary / multi-label): the KL between the Bernoulli distributions of each
    label, `p = sigmoid(teacher / T)`, averaged over the labels as Keras'
    binary cross-entropy averages, times `T^2`. All axes but the last are
    samples / positions and are averaged. The `T^2` keeps the gradient scale
    independent of `T` (Hinton et al., 2015). `keras.ops` only: runs on every
    backend, inside compiled steps.

    Example:

    >>> import numpy as np
    >>> teacher, student = np.array([[2.0, 0.5, -1.0]]), np.array([[0.1, 0.2, 0.3]])
    >>> round(float(distillation_loss(teacher, student, temperature=2.0)), 4)
    0.7521
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation={activation!r}; distillation_loss takes 'softmax' or 'sigmoid'.")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}; it must be positive (3 to 5 are typical).")
    teacher = keras.ops.cast(teacher_logits, "float32") / temperature
    student = keras.ops.cast(student_logits, "float32") / temperature
    if activation == "softmax":
        log_p = keras.ops.log_softmax(teacher, axis=-1)
        log_q = keras.ops.log_softmax(student, axis=-1)
        per_sample = keras.ops.sum(keras.ops.exp(log_p) * (log_p - log_q), axis=-1)
    else:
        # log(1 - sigmoid(x)) = log_sigmoid(-x): stable where sigmoid saturates at 1.
        log_p, log_not_p = keras.ops.log_sigmoid(teacher), keras.ops.log_sigmoid(-teacher)
        log_q, log_not_q = keras.ops.log_sigmoid(student), keras.ops.log_sigmoid(-student)
        per_label = keras.ops.exp(log_p) * (log_p - log_q) + keras.ops.exp(log_not_p) * (log_not_p - log_not_q)
        per_sample = keras.ops.mean(per_label, axis=-1)
    return keras.ops.mean(per_sample) * (temperature**2)


@keras.saving.register_keras_serializable(package="keras_logits")
class KLDistillation(_DistillationLoss):
    """`Distiller` loss: `distillation_loss` of the teacher's and student's logits.

    Use it in place of `keras.distillation.LogitsDistillation`, whose default
    `loss="kl_divergence"` computes KL on the temperature-scaled logits
    themselves in Keras 3.15 (teacher [2, 0.5, -1], student [0.1, 0.2, 0.3],
    T = 2: 3.22 instead of 0.75). Both models must output logits: pass them
    through `keras_logits.logits_model`.

    Args:
        temperature: Softens both distributions; 3 to 5 are typical.
        activation: `"softmax"` (one class per sample) or `"sigmoid"`
            (binary / multi-label heads).

    Example:

    >>> import numpy as np
    >>> loss = KLDistillation(temperature=2.0)
    >>> round(float(loss.compute_loss(np.array([[2.0, 0.5, -1.0]]), np.array([[0.1, 0.2, 0.3]]))), 4)
    0.7521
    """

    def __init__(self, temperature: float = 3.0, activation: str = "softmax"):
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"temperature={temperature!r}; it must be a positive number (3 to 5 are typical).")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation={activation!r}; KLDistillation takes 'softmax' or 'sigmoid'.")
        self.temperature = float(temperature)
        self.activation = activation

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        losses = keras.tree.map_structure(
            lambda teacher, student: distillation_loss(
                teacher, student, temperature=self.temperature, activation=self.activation),
            teacher_outputs, student_outputs,
        )
        flat = keras.tree.flatten(losses)
        return flat[0] if len(flat) == 1 else keras.ops.sum(keras.ops.stack(flat))

    def get_config(self) -> dict:
        return {"temperature": self.temperature, "activation": self.activation}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

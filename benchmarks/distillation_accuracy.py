"""Digits accuracy of a small student: alone, distilled from the naive set-up, distilled with logits_model.

    python -m benchmarks.distillation_accuracy            # 3 seeds, about a minute on 2 CPUs
    python -m benchmarks.distillation_accuracy --seeds 5 --epochs 8

Not part of `python -m benchmarks` (which measures time ratios): this measures what
keras_logits.logits_model + KLDistillation change in a `keras.distillation.Distiller` run.

- alone: the student compiled with sparse categorical cross-entropy on its softmax;
- naive: `Distiller(teacher, student, LogitsDistillation(T))` on the models as they are
  (fused softmax; default `loss="kl_divergence"` string), student loss on the softmax;
- logits_model: `Distiller(logits_model(teacher), logits_model(student), KLDistillation(T))`,
  student loss `from_logits=True`.

The naive set-up is not as broken on fused-softmax models as on logits: dividing two probability
vectors by T cancels inside the log of plain `kl_divergence`, so it computes KL(p_t || p_s) at
T = 1, divided by T (no softening). `logits_model` with T = 1 is the like-for-like comparison.
Each distilled set-up runs with Keras' default `student_loss_weight=0.5` and with 0.0 (the teacher
is the only signal: shows what the distillation term alone teaches).

The accuracy is the original student's own `predict` (its softmax) on the held-out split;
the teacher is the demo CNN, trained once.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_logits.cli.demo import build_digits_cnn, load_digits  # noqa: E402
from keras_logits.distillation import KLDistillation, distillation_loss, logits_model  # noqa: E402

TEMPERATURE = 3.0


def build_student(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(10, activation="softmax", name="head"),
    ], name="student")


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=-1) == y))


def train(setup: str, teacher, seed: int, data, epochs: int, student_loss_weight: float = 0.5,
          temperature: float = TEMPERATURE) -> float:
    (x_train, y_train), (x_test, y_test) = data
    student = build_student(seed)
    optimizer = keras.optimizers.Adam(1e-2)
    if setup == "alone":
        student.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        student.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
        return accuracy(student, x_test, y_test)
    if setup == "naive":
        distiller = keras.distillation.Distiller(
            teacher=teacher, student=student, distillation_losses=keras.distillation.LogitsDistillation(temperature),
            student_loss_weight=student_loss_weight)
        distiller.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    else:
        distiller = keras.distillation.Distiller(
            teacher=logits_model(teacher), student=logits_model(student),
            distillation_losses=KLDistillation(temperature), student_loss_weight=student_loss_weight)
        distiller.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keras.utils.set_random_seed(seed)
    distiller.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    return accuracy(student, x_test, y_test)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--teacher-epochs", type=int, default=15)
    arguments = parser.parse_args(argv)

    data = load_digits()
    (x_train, y_train), (x_test, y_test) = data
    teacher = build_digits_cnn(seed=0)
    teacher.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    teacher.fit(x_train, y_train, epochs=arguments.teacher_epochs, batch_size=64, verbose=0)
    teacher.trainable = True  # each Distiller freezes it; the next setup starts from the same state

    teacher_logits = np.array([[2.0, 0.5, -1.0]])
    student_logits = np.array([[0.1, 0.2, 0.3]])
    keras_default = keras.distillation.LogitsDistillation(2.0).compute_loss(teacher_logits, student_logits)
    ours = distillation_loss(teacher_logits, student_logits, temperature=2.0)
    print(f"loss, teacher [2, 0.5, -1], student [0.1, 0.2, 0.3], T=2: LogitsDistillation() default "
          f"{float(keras_default):.4f}, KLDistillation {float(ours):.4f}")
    print(f"backend {keras.backend.backend()}; teacher accuracy {accuracy(teacher, x_test, y_test):.4f}; "
          f"student: Dense(16)-Dense(10) MLP, {arguments.epochs} epochs, T={TEMPERATURE}, "
          f"{arguments.seeds} seeds")
    print("| student | T | student_loss_weight | mean accuracy | std | per seed |")
    print("|---|---|---|---|---|---|")
    rows = [("alone", None, 1.0)]
    for weight in (0.5, 0.0):
        rows += [("naive", TEMPERATURE, weight), ("logits_model", TEMPERATURE, weight), ("logits_model", 1.0, weight)]
    for setup, temperature, weight in rows:
        scores = [train(setup, teacher, seed, data, arguments.epochs, weight, temperature or TEMPERATURE)
                  for seed in range(arguments.seeds)]
        teacher.trainable = True
        per_seed = ", ".join(f"{score:.4f}" for score in scores)
        print(f"| {setup} | {temperature or '-'} | {weight} | {np.mean(scores):.4f} | {np.std(scores):.4f} "
              f"| {per_seed} |")


if __name__ == "__main__":
    main()

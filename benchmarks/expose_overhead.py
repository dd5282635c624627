"""Cost of exposing logits: predict time and expose() time, as ratios measured side by side.

    python -m benchmarks.expose_overhead [--repeats 20] [--quick]

Prints, medians of interleaved repeats:
- predict time of the exposed model / the original (target <= 1.02), next to the naive
  two-model recipe (a features model plus the full model, ~2x), the `layers[-2]` recipe with the
  head's Dense re-applied by hand in NumPy, and the original returning its output twice (Keras'
  own cost of a second output array);
- expose() time / keras.models.clone_model time (+ editing the activation, the iNNvestigate /
  tf-keras-vis approach) on NASNetMobile and ResNet50 (target <= 0.05, < 0.2 s).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_logits  # noqa: E402
from benchmarks._timing import command_line, interleaved_medians  # noqa: E402
from keras_logits.cli.demo import build_digits_cnn  # noqa: E402


def predict_rows(name: str, model, images: np.ndarray, repeats: int) -> list:
    exposed = keras_logits.expose(model)
    head = keras_logits.find_head(model)
    features = keras.Model(model.inputs, head.route[-1].input_tensor)
    kernel, bias = (np.asarray(w) for w in head.layer.get_weights())
    # Keras' fixed cost of a second output array: the original returning its output twice.
    twice = keras.Model(model.inputs, {"a": model.outputs[0], "b": model.outputs[0]})

    def by_hand():
        logits = np.asarray(features.predict_on_batch(images)) @ kernel + bias
        shifted = np.exp(logits - logits.max(-1, keepdims=True))
        return logits, shifted / shifted.sum(-1, keepdims=True)

    candidates = {
        "original": lambda: model.predict_on_batch(images),
        "exposed": lambda: exposed.predict_on_batch(images),
        "output twice": lambda: twice.predict_on_batch(images),
        "two models": lambda: (features.predict_on_batch(images), model.predict_on_batch(images)),
        "layers[-2] by hand": by_hand,
    }
    medians = interleaved_medians(candidates, repeats=repeats, warmup=3)
    base = medians["original"]
    return [
        (f"{name} predict, exposed / original", medians["exposed"] / base, "<= 1.02",
         f"original {base * 1e3:.2f} ms per batch of {len(images)}"),
        (f"{name} predict, original returning its output twice / original", medians["output twice"] / base,
         "(floor)", "Keras' cost of a second output array"),
        (f"{name} predict, two-model recipe / original", medians["two models"] / base, "(alternative)",
         "features model + full model"),
        (f"{name} predict, layers[-2] + Dense re-applied in NumPy / original", medians["layers[-2] by hand"] / base,
         "(alternative)", "features model, then x @ kernel + bias and softmax by hand"),
    ]


def expose_rows(name: str, model, repeats: int) -> list:
    head_name = keras_logits.find_head(model).layer.name

    def clone_and_edit():
        clone = keras.models.clone_model(model)
        clone.get_layer(head_name).activation = keras.activations.linear
        return clone

    medians = interleaved_medians({"expose": lambda: keras_logits.expose(model), "clone_model": clone_and_edit},
                                  repeats=repeats, warmup=1)
    return [(f"{name} expose() / clone_model", medians["expose"] / medians["clone_model"],
             "<= 0.05 and < 0.2 s",
             f"expose {medians['expose'] * 1e3:.0f} ms, clone_model {medians['clone_model'] * 1e3:.0f} ms")]


def run(*, repeats: int = 20, quick: bool = False) -> list:
    """All rows; `quick` uses small models and few repeats (the test suite proves it runs)."""
    rng = np.random.default_rng(0)
    if quick:
        repeats = 2
        small = keras.applications.MobileNetV2(weights=None, classes=10, input_shape=(32, 32, 3))
        return (predict_rows("MobileNetV2 32x32 batch 8", small, rng.uniform(0, 255, (8, 32, 32, 3)).astype(
            "float32"), repeats) + expose_rows("MobileNetV2 32x32", small, repeats))
    rows = predict_rows("MobileNetV2 96x96 batch 64",
                        keras.applications.MobileNetV2(weights=None, classes=10, input_shape=(96, 96, 3)),
                        rng.uniform(0, 255, (64, 96, 96, 3)).astype("float32"), repeats)
    rows += predict_rows("digits CNN batch 64", build_digits_cnn(),
                         rng.uniform(0, 1, (64, 8, 8, 1)).astype("float32"), max(repeats, 1000))
    rows += expose_rows("NASNetMobile", keras.applications.NASNetMobile(weights=None, classes=10,
                                                                        input_shape=(224, 224, 3)), repeats)
    rows += expose_rows("ResNet50", keras.applications.ResNet50(weights=None, classes=10,
                                                                input_shape=(224, 224, 3)), repeats)
    return rows


def main(argv=None) -> list:
    return command_line(argv, description=__doc__.splitlines()[0], title="expose overhead", run=run, repeats=20)


if __name__ == "__main__":
    main()

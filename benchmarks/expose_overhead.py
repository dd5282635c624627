"""Cost of exposing logits: predict time and expose() time, as ratios measured side by side.

    python benchmarks/expose_overhead.py [--repeats 20]

Prints, medians of interleaved repeats:
- predict time of the exposed model / the original (target <= 1.02), next to the naive
  two-model recipe (a features model plus the full model, ~2x);
- expose() time / keras.models.clone_model time on NASNetMobile (target <= 0.05, < 0.2 s).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_logits  # noqa: E402
from benchmarks._timing import interleaved_medians, machine, print_table  # noqa: E402
from keras_logits.demo import build_digits_cnn  # noqa: E402


def predict_rows(name: str, model, images: np.ndarray, repeats: int) -> list:
    exposed = keras_logits.expose(model)
    features = keras.Model(model.inputs, keras_logits.find_head(model).route[-1].input_tensor)
    # Keras' fixed cost of a second output array: the original returning its output twice.
    twice = keras.Model(model.inputs, {"a": model.outputs[0], "b": model.outputs[0]})
    candidates = {
        "original": lambda: model.predict_on_batch(images),
        "exposed": lambda: exposed.predict_on_batch(images),
        "output twice": lambda: twice.predict_on_batch(images),
        "two models": lambda: (features.predict_on_batch(images), model.predict_on_batch(images)),
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
    ]


def expose_rows(repeats: int) -> list:
    model = keras.applications.NASNetMobile(weights=None, classes=10, input_shape=(224, 224, 3))

    def clone_and_edit():
        clone = keras.models.clone_model(model)
        clone.get_layer("predictions").activation = keras.activations.linear
        return clone

    medians = interleaved_medians({"expose": lambda: keras_logits.expose(model), "clone_model": clone_and_edit},
                                  repeats=repeats, warmup=1)
    return [("NASNetMobile expose() / clone_model", medians["expose"] / medians["clone_model"],
             "<= 0.05 and < 0.2 s",
             f"expose {medians['expose'] * 1e3:.0f} ms, clone_model {medians['clone_model'] * 1e3:.0f} ms")]


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    repeats = parser.parse_args(argv).repeats
    rng = np.random.default_rng(0)
    rows = predict_rows("MobileNetV2 96x96 batch 64",
                        keras.applications.MobileNetV2(weights=None, classes=10, input_shape=(96, 96, 3)),
                        rng.uniform(0, 255, (64, 96, 96, 3)).astype("float32"), repeats)
    rows += predict_rows("digits CNN batch 64", build_digits_cnn(),
                         rng.uniform(0, 1, (64, 8, 8, 1)).astype("float32"), max(repeats, 1000))
    rows += expose_rows(repeats)
    print_table(f"expose overhead ({machine()})", rows)
    return rows


if __name__ == "__main__":
    main()

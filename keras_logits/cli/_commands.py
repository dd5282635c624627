"""The bodies of the `keras-logits` subcommands: load, run, print. `_main` parses and dispatches.

Imported after the command line has quieted TensorFlow's start-up, so Keras is imported here
freely; TensorFlow itself only through `keras_logits.serving`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np

import keras_logits
from keras_logits import serving
from keras_logits._class_ids import class_ids, positions, top_k as best
from keras_logits._files import atomic_keras_save, atomic_write
from keras_logits._graph import model_outputs
from keras_logits.cli._inputs import read_inputs
from keras_logits.cli._loading import is_saved_model, load_keras_model
from keras_logits.cli._tables import position_table, prediction_table


def inspect(arguments) -> None:
    """Prints where a model's logits are (or what an export serves), and whether layers[-2] is a trap."""
    if is_saved_model(arguments.model):
        _inspect_export(Path(arguments.model))  # Reads the JSON manifest only; runs nothing.
        return
    model = _load(arguments)
    print(f"Model: '{model.name}' ({type(model).__name__}), {model.count_params():,} parameters")
    if arguments.head is not None:
        heads = {arguments.head: keras_logits.find_head(model, output=arguments.head, activation=arguments.activation)}
    else:
        heads = keras_logits.find_heads(model, activation=arguments.activation)
    for head in heads.values():
        print(f"Head: {head.describe()}")  # names the positions of a per-position head
        if head.positions:
            print("  one prediction per position")
        print(f"  layer: {'/'.join(head.path + (head.layer.name,))} ({type(head.layer).__name__})"
              f"{', nested in ' + ' > '.join(head.path) if head.path else ''}")
        print(f"  logits: output of '{head.logits_layer.name}' ({type(head.logits_layer).__name__})"
              f"{' before its ' + head.activation if head.fused else ''}")
    print(_layers_minus_two_note(model, next(iter(heads.values()))))


def _layers_minus_two_note(model, head) -> str:
    """Says whether the usual `model.layers[-2].output` recipe gives the logits on this model."""
    if len(model.layers) < 2:
        return "model.layers[-2] does not exist: the model has one layer."
    outputs = list(model_outputs(model))
    if len(outputs) > 1:
        # One layer cannot be the logits of several heads, and on a multi-output model it may be another head.
        return (f"model.layers[-2] ('{model.layers[-2].name}') does not apply here: the model has {len(outputs)} "
                f"outputs {outputs}, and one layer is not the logits of each head. The logits layer of each head "
                "is listed above; keras_logits.expose(model) returns them all.")
    penultimate = model.layers[-2]
    separate_at_top = not head.fused and head.applied_by_model and not head.path
    if separate_at_top and penultimate.output is head.route[-1].input_tensor:
        return f"model.layers[-2] ('{penultimate.name}') gives the logits on this model."
    fused = f" (the {head.activation} is fused into '{head.layer.name}')" if head.fused else ""
    return (f"Warning: model.layers[-2] is '{penultimate.name}' ({type(penultimate).__name__}); its output is "
            f"NOT the logits{fused}. Use keras_logits.expose(model) or `keras-logits expose`.")


def _inspect_export(path: Path) -> None:
    if not (path / serving.MANIFEST).is_file():
        raise ValueError(f"'{path}' is a SavedModel without a {serving.MANIFEST} manifest: it was not exported by "
                         "keras-logits.")
    manifest = serving.read_manifest(path)
    head = manifest["head"]
    print(f"Export: {path} ({manifest['format']}), made with keras-logits {manifest['versions']['keras_logits']}")
    print(f"Head: {head['activation']} over {head['num_classes']} classes (layer '{head['layer']}', "
          f"{'fused' if head['fused'] else 'separate'}); class_id = {head['class_id']}")
    probabilities = next((o for o in manifest["outputs"] if o["name"] == "probabilities"), None)
    per_position = positions(probabilities["shape"], head.get("axis", -1)) if probabilities else ()
    if per_position:
        print(f"  per-position head, positions ({', '.join(str(size) for size in per_position)}): "
              "one prediction per position")
    if head.get("class_names"):
        print(f"Classes: {', '.join(head['class_names'])}")
    for spec in manifest["inputs"]:
        print(f"Input:  {spec['name']} {spec['dtype']} {spec['shape']}")
    for spec in manifest["outputs"]:
        print(f"Output: {spec['name']} {spec['dtype']} {spec['shape']}")


def expose(arguments) -> None:
    """Writes a .keras model that returns logits and probabilities (and features with --features)."""
    output = Path(arguments.output)
    if output.suffix != ".keras":
        raise ValueError(f"OUT must end in .keras, got '{output}'.")
    if output.exists() and not arguments.overwrite:
        raise FileExistsError(f"'{output}' already exists; pass --overwrite to replace it.")
    model = _load(arguments)
    exposed = keras_logits.expose(model, features=arguments.features, activation=arguments.activation,
                                  head=arguments.head)
    atomic_keras_save(exposed, output)
    print(f"Wrote {output}: outputs {', '.join(sorted(model_outputs(exposed)))}, "
          f"{exposed.count_params():,} parameters shared with '{model.name}'.")


VERIFY = {"fresh": True, "in_process": "in_process", "none": False}
_VERIFYING = {"fresh": "verifying in a fresh process", "in_process": "verifying in this process",
              "none": "without verification"}


def export(arguments) -> None:
    """Exports a verified SavedModel or ONNX graph and says how it was verified."""
    class_names = _read_class_names(arguments.class_names) if arguments.class_names else None
    model = _load(arguments)
    _progress(f"Exporting to {arguments.directory} ({arguments.format}); {_VERIFYING[arguments.verify]}...")
    path = keras_logits.export(model, arguments.directory, format=arguments.format, overwrite=arguments.overwrite,
                               verify=VERIFY[arguments.verify], class_names=class_names, features=arguments.features,
                               head=arguments.head, activation=arguments.activation)
    manifest = keras_logits.read_manifest(path)
    outputs = ", ".join(f"{o['name']} ({o['dtype']})" for o in manifest["outputs"])
    verification = manifest["verification"]
    checked = (f"verified with {verification['consumer']} ({verification.get('process', 'fresh')} process, "
               f"{verification.get('seconds', float('nan')):.1f} s), max difference "
               f"{max(verification['max_abs_difference'].values()):.2g}") if verification else "not verified"
    print(f"Exported {path}: {outputs}; {checked}.")


@dataclasses.dataclass
class _Predictor:
    """What `predict` needs from a model, whichever kind of file it came from."""

    run: Callable  # inputs -> (logits, probabilities)
    input_shape: tuple
    input_dtype: str
    activation: str
    axis: int
    class_names: Optional[list] = None


def predict(arguments) -> None:
    """Prints the top classes of each input, or writes all logits, probabilities and class ids to a file."""
    if arguments.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {arguments.top_k}.")
    if is_saved_model(arguments.model):
        if arguments.head is not None:
            raise ValueError("--head picks an output of a Keras model file; a SavedModel exported by keras-logits "
                             "serves one head already (export each head with `keras-logits export --head NAME`).")
        predictor = _saved_model_predictor(Path(arguments.model), unsafe=arguments.unsafe)
    else:
        predictor = _keras_predictor(arguments)
    if arguments.class_names:
        predictor.class_names = _read_class_names(arguments.class_names)
    x = read_inputs(arguments.input, predictor.input_shape, scale=arguments.scale, dtype=predictor.input_dtype,
                    image_size=arguments.image_size)
    _progress(f"Predicting {len(x)} samples...")
    logits, probabilities = predictor.run(x)
    ids = class_ids(probabilities, predictor.activation, predictor.axis)
    if arguments.output:
        _write_predictions(Path(arguments.output), logits, probabilities, ids, predictor, arguments.top_k)
        print(f"Wrote logits, probabilities and class ids of {len(x)} samples to {arguments.output}.")
    elif probabilities.ndim > 2:
        print(position_table(ids, num_classes=probabilities.shape[predictor.axis], activation=predictor.activation,
                             axis=predictor.axis, top_k=arguments.top_k, class_names=predictor.class_names))
    else:
        print(prediction_table(logits, probabilities, top_k=arguments.top_k, axis=predictor.axis,
                               class_names=predictor.class_names))


def _keras_predictor(arguments) -> _Predictor:
    model = _load(arguments)
    exposed, head = keras_logits.ensure_exposed(model, head=arguments.head, activation=arguments.activation)
    if len(exposed.inputs) != 1:
        raise ValueError(f"'{arguments.model}' takes {len(exposed.inputs)} inputs; predict supports "
                         "single-input models (use keras_logits.expose in Python for the others).")
    dtype = keras.backend.standardize_dtype(exposed.inputs[0].dtype)

    def run(x):
        if dtype == "string":  # Keras' array adapter refuses NumPy str arrays; one batch of tensors works.
            outputs = exposed.predict_on_batch(serving.as_model_input(x))
        else:
            outputs = exposed.predict(x, batch_size=arguments.batch_size, verbose=0)
        return np.asarray(outputs["logits"]), np.asarray(outputs["probabilities"])

    return _Predictor(run, tuple(exposed.inputs[0].shape), dtype, head.activation, head.axis)


def _saved_model_predictor(path: Path, *, unsafe: bool) -> _Predictor:
    serving.check_saved_model(path, unsafe=unsafe)  # Before TensorFlow loads, hence runs, anything in it.
    _progress(f"Loading {path}...")
    served = serving.load_saved_model(path)
    (name, (shape, dtype)), *rest = served.inputs.items()
    if rest:
        raise ValueError(f"'{path}' takes {len(rest) + 1} inputs; predict supports single-input models.")
    if "logits" not in served.outputs or "probabilities" not in served.outputs:
        raise ValueError(f"'{path}' serves {list(served.outputs)}, not logits and probabilities: export it with "
                         "keras-logits.")
    head = serving.read_manifest(path)["head"] if (path / serving.MANIFEST).is_file() else {}

    def run(x):
        outputs = serving.call_saved_model(served, {name: x})
        return outputs["logits"], outputs["probabilities"]

    return _Predictor(run, shape, dtype, head.get("activation", "softmax"), head.get("axis", -1),
                      head.get("class_names"))


def _write_predictions(path: Path, logits, probabilities, ids, predictor: _Predictor, top_k) -> None:
    if path.suffix == ".npz":
        top_ids, top_values = best(probabilities, top_k, predictor.axis)
        arrays = {"logits": logits, "probabilities": probabilities, "class_id": ids, "top_k_class_id": top_ids,
                  "top_k_probability": top_values}
        atomic_write(path, lambda f: np.savez(f, **arrays))
    elif path.suffix == ".csv":
        flat_logits, flat_probabilities = logits.reshape(len(logits), -1), probabilities.reshape(len(logits), -1)
        header = ["sample"] + [f"logit_{j}" for j in range(flat_logits.shape[1])] + [
            f"probability_{j}" for j in range(flat_logits.shape[1])]
        rows = [",".join([str(i)] + [repr(float(v)) for v in flat_logits[i]] + [repr(float(v)) for v in
                                                                                 flat_probabilities[i]])
                for i in range(len(flat_logits))]
        atomic_write(path, lambda f: f.write("\n".join([",".join(header), *rows]) + "\n"), binary=False)
    else:
        raise ValueError(f"--output must end in .npz or .csv, got '{path}'.")


def demo(arguments) -> None:
    """Runs the README demo (`keras_logits.cli.demo.run_demo`)."""
    from keras_logits.cli.demo import run_demo

    run_demo(epochs=arguments.epochs, rows=arguments.rows, output_dir=arguments.output_dir)


def _load(arguments):
    _progress(f"Loading {arguments.model}...")
    return load_keras_model(arguments.model, unsafe=arguments.unsafe)


def _read_class_names(path) -> list:
    text = Path(path).read_text()
    if text.lstrip().startswith("["):
        return [str(name) for name in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

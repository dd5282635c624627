"""The `keras-logits` command line tool: argument parsing and printing only.

Exit codes: 0 success, 1 failure (one line on stderr, `--debug` for the
traceback), 2 usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np


def _quiet_tensorflow(debug: bool, needs_tensorflow: bool = False) -> None:
    """Imports Keras (and TensorFlow) with their C++ start-up log lines hidden.

    TensorFlow 2.21 prints oneDNN / CUDA lines through absl before
    TF_CPP_MIN_LOG_LEVEL is read, so file descriptor 2 is pointed at /dev/null
    while the backend starts. On the JAX backend TensorFlow is imported here
    only for commands that write or read TensorFlow graphs (`needs_tensorflow`).
    `--debug` shows everything.
    """
    if debug:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras

            if keras.backend.backend() == "tensorflow" or (needs_tensorflow and _tensorflow_installed()):
                import tensorflow as tf

                tf.get_logger().setLevel("ERROR")
                tf.config.list_physical_devices()  # Probes CUDA now, while quiet.
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tensorflow_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- commands --------------------------------------------------------------------------------


def _inspect(arguments) -> None:
    from keras_logits.cli._loading import is_saved_model

    if is_saved_model(arguments.model):
        _inspect_export(Path(arguments.model))  # Reads the JSON manifest only; runs nothing.
        return
    import keras_logits

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
    from keras_logits._graph import model_outputs

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
    from keras_logits.serving import MANIFEST, read_manifest

    if not (path / MANIFEST).is_file():
        raise ValueError(f"'{path}' is a SavedModel without a {MANIFEST} manifest: it was not exported by keras-logits.")
    manifest = read_manifest(path)
    head = manifest["head"]
    print(f"Export: {path} ({manifest['format']}), made with keras-logits {manifest['versions']['keras_logits']}")
    print(f"Head: {head['activation']} over {head['num_classes']} classes (layer '{head['layer']}', "
          f"{'fused' if head['fused'] else 'separate'}); class_id = {head['class_id']}")
    from keras_logits._class_ids import positions

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


def _expose(arguments) -> None:
    import keras_logits
    from keras_logits._files import atomic_keras_save
    from keras_logits._graph import model_outputs

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


def _export(arguments) -> None:
    import keras_logits

    class_names = _read_class_names(arguments.class_names) if arguments.class_names else None
    model = _load(arguments)
    if not arguments.activation:
        _require_one_head(model, arguments.head)
    verify = {"fresh": True, "in_process": "in_process", "none": False}[arguments.verify]
    where = {"fresh": "verifying in a fresh process", "in_process": "verifying in this process",
             "none": "without verification"}[arguments.verify]
    _progress(f"Exporting to {arguments.directory} ({arguments.format}); {where}...")
    path = keras_logits.export(model, arguments.directory, format=arguments.format, overwrite=arguments.overwrite,
                               verify=verify, class_names=class_names, features=arguments.features, head=arguments.head,
                               activation=arguments.activation)
    manifest = keras_logits.read_manifest(path)
    outputs = ", ".join(f"{o['name']} ({o['dtype']})" for o in manifest["outputs"])
    verification = manifest["verification"]
    checked = (f"verified with {verification['consumer']} ({verification.get('process', 'fresh')} process, "
               f"{verification.get('seconds', float('nan')):.1f} s), max difference "
               f"{max(verification['max_abs_difference'].values()):.2g}") if verification else "not verified"
    print(f"Exported {path}: {outputs}; {checked}.")


def _require_one_head(model, head) -> None:
    """Refuses a model with several classification outputs unless --head picks one."""
    if head is not None:
        return
    import keras_logits

    heads = keras_logits.find_heads(model)
    if len(heads) > 1:
        raise ValueError(f"Model '{model.name}' has {len(heads)} classification outputs ({', '.join(heads)}); "
                         "pick one with --head NAME.")


@dataclasses.dataclass
class _Predictor:
    """What `predict` needs from a model, whichever kind of file it came from."""

    run: Callable  # inputs -> (logits, probabilities)
    input_shape: tuple
    input_dtype: str
    activation: str
    axis: int
    class_names: Optional[list] = None


def _predict(arguments) -> None:
    from keras_logits._class_ids import class_ids
    from keras_logits.cli._loading import is_saved_model
    from keras_logits.cli._inputs import read_inputs

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
    elif probabilities.ndim - 2 > 0:
        print(_position_table(probabilities, ids, predictor, arguments.top_k))
    else:
        print(_prediction_table(logits, probabilities, arguments.top_k, predictor.class_names, predictor.axis))


def _keras_predictor(arguments) -> _Predictor:
    import keras

    import keras_logits

    model = _load(arguments)
    if not arguments.activation:
        _require_one_head(model, arguments.head)
    exposed, head = keras_logits.ensure_exposed(model, head=arguments.head, activation=arguments.activation)
    if len(exposed.inputs) != 1:
        raise ValueError(f"'{arguments.model}' takes {len(exposed.inputs)} inputs; predict supports "
                         "single-input models (use keras_logits.expose in Python for the others).")
    dtype = keras.backend.standardize_dtype(exposed.inputs[0].dtype)

    def run(x):
        if dtype == "string":  # Keras' array adapter refuses NumPy str arrays; one batch of tensors works.
            import tensorflow as tf

            outputs = exposed.predict_on_batch(tf.constant(x))
        else:
            outputs = exposed.predict(x, batch_size=arguments.batch_size, verbose=0)
        return np.asarray(outputs["logits"]), np.asarray(outputs["probabilities"])

    return _Predictor(run, tuple(exposed.inputs[0].shape), dtype, head.activation, head.axis)


def _saved_model_predictor(path: Path, *, unsafe: bool) -> _Predictor:
    from keras_logits.serving import MANIFEST, read_manifest
    from keras_logits.serving import check_saved_model

    check_saved_model(path, unsafe=unsafe)  # Before TensorFlow loads, hence runs, anything in it.
    import tensorflow as tf

    _progress(f"Loading {path}...")
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    (name, spec), *rest = serve.structured_input_signature[1].items()
    if rest:
        raise ValueError(f"'{path}' takes {len(rest) + 1} inputs; predict supports single-input models.")
    outputs = serve.structured_outputs
    if "logits" not in outputs or "probabilities" not in outputs:
        raise ValueError(f"'{path}' serves {sorted(outputs)}, not logits and probabilities: export it with keras-logits.")
    head = read_manifest(path)["head"] if (path / MANIFEST).is_file() else {}

    def run(x):
        result = serve(**{name: tf.constant(x, dtype=spec.dtype)})
        return result["logits"].numpy(), result["probabilities"].numpy()

    dtype = "string" if spec.dtype == tf.string else spec.dtype.name
    return _Predictor(run, tuple(spec.shape.as_list()), dtype, head.get("activation", "softmax"),
                      head.get("axis", -1), head.get("class_names"))


def _label(index, class_names) -> str:
    return class_names[index] if class_names and index < len(class_names) else str(index)


def _prediction_table(logits, probabilities, top_k, class_names, axis=-1) -> str:
    from keras_logits._class_ids import top_k as best

    logits = np.moveaxis(logits, axis, -1)
    ids, values = best(probabilities, top_k, axis)
    lines = [f"{'sample':>6} {'rank':>4} {'class':>12} {'logit':>9} {'probability':>11}"]
    for i in range(len(logits)):
        for rank, (index, value) in enumerate(zip(ids[i], values[i]), start=1):
            lines.append(f"{i:>6} {rank:>4} {_label(index, class_names):>12} {logits[i, index]:>9.4f} "
                         f"{value:>11.6f}")
    return "\n".join(lines)


def _position_table(probabilities, ids, predictor: _Predictor, top_k) -> str:
    """One line per sample of a per-position head: its most frequent predicted classes."""
    num_classes = probabilities.shape[predictor.axis]
    lines = [f"{'sample':>6} {'positions':>9}  most frequent classes (positions)"]
    for i in range(len(probabilities)):
        if predictor.activation == "softmax":
            counts, count = np.bincount(ids[i].ravel(), minlength=num_classes), ids[i].size
        else:  # Sigmoid: how many positions each label is on at.
            on = np.moveaxis(ids[i], predictor.axis if predictor.axis < 0 else predictor.axis - 1, -1)
            counts, count = on.reshape(-1, num_classes).sum(0), on.size // num_classes
        frequent = [j for j in np.argsort(-counts, kind="stable")[:top_k] if counts[j]]
        summary = ", ".join(f"{_label(j, predictor.class_names)} ({counts[j]}, {counts[j] / count:.0%})"
                            for j in frequent)
        lines.append(f"{i:>6} {count:>9}  {summary or '-'}")
    return "\n".join(lines)


def _write_predictions(path: Path, logits, probabilities, ids, predictor: _Predictor, top_k) -> None:
    from keras_logits._class_ids import top_k as best
    from keras_logits._files import atomic_write

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


def _demo(arguments) -> None:
    from keras_logits.cli.demo import run_demo

    run_demo(epochs=arguments.epochs, rows=arguments.rows, output_dir=arguments.output_dir)


def _load(arguments):
    from keras_logits.cli._loading import load_keras_model

    _progress(f"Loading {arguments.model}...")
    return load_keras_model(arguments.model, unsafe=arguments.unsafe)


def _read_class_names(path) -> list:
    import json

    text = Path(path).read_text()
    if text.lstrip().startswith("["):
        return [str(name) for name in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip()]


# ---- parser ----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show TensorFlow logs and tracebacks")
    model_options = argparse.ArgumentParser(add_help=False)
    model_options.add_argument("--unsafe", action="store_true",
                               help="allow layers that run Python code stored in the file (Lambda) and "
                                    "SavedModels whose graphs touch files, run Python or print; "
                                    "only for files you trust")
    model_options.add_argument("--activation", choices=["softmax", "sigmoid"],
                               help="the model outputs logits: apply this activation for probabilities")
    model_options.add_argument("--head", metavar="NAME",
                               help="the output to use, for models with several classification outputs")
    class_names_option = argparse.ArgumentParser(add_help=False)
    class_names_option.add_argument("--class-names", help="file with one class name per line (or a JSON list)")

    parser = argparse.ArgumentParser(
        prog="keras-logits", parents=[common],
        description="Find a Keras classifier's logits and get them with its probabilities.",
        epilog="Run 'keras-logits COMMAND --help' for each command's options and an example.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help, example, parents=(common,)):
        return commands.add_parser(name, parents=list(parents), help=help,
                                   description=f"{help[0].upper()}{help[1:]}.\n\nExample:\n  {example}",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    inspect = command("inspect", "show where a model's logits are, and whether layers[-2] is a trap",
                      "keras-logits inspect model.keras", (common, model_options))
    inspect.add_argument("model", help=".keras / .h5 file, or a SavedModel exported by keras-logits")
    inspect.set_defaults(run=_inspect)

    expose = command("expose", "write a .keras model that returns logits and probabilities",
                     "keras-logits expose model.keras model_exposed.keras --features", (common, model_options))
    expose.add_argument("model", help=".keras or .h5 model file")
    expose.add_argument("output", help="the .keras file to write")
    expose.add_argument("--features", action="store_true", help="also output the features feeding the head")
    expose.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    expose.set_defaults(run=_expose)

    export = command("export", "export a verified SavedModel or ONNX graph with logits, probabilities, class_id",
                     "keras-logits export model.keras exported/ --format onnx --class-names classes.txt",
                     (common, model_options, class_names_option))
    export.add_argument("model", help=".keras or .h5 model file")
    export.add_argument("directory", help="export directory to create")
    export.add_argument("--format", choices=["tf_saved_model", "onnx"], default="tf_saved_model")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export")
    export.add_argument("--features", action="store_true", help="also export the features feeding the head")
    export.add_argument("--verify", choices=["fresh", "in_process", "none"], default="fresh",
                        help="check the export before installing it: in a fresh Python process without "
                             "keras-logits (default, the strongest check), loaded in this process (faster), "
                             "or not at all")
    export.add_argument("--no-verify", dest="verify", action="store_const", const="none",
                        help="the same as --verify none")
    export.set_defaults(run=_export)

    predict = command("predict", "print or save logits and probabilities for inputs",
                      "keras-logits predict model.keras images.npy --top-k 3 --output predictions.npz",
                      (common, model_options, class_names_option))
    predict.add_argument("model", help=".keras / .h5 file, or a SavedModel exported by keras-logits")
    predict.add_argument("input", help=".npy, .npz, .csv (one sample per row) or a folder of images")
    predict.add_argument("--top-k", type=int, default=3, help="classes to print per sample (default 3)")
    predict.add_argument("--output", help="write all logits and probabilities to this .npz or .csv")
    predict.add_argument("--scale", type=float, default=1.0,
                         help="multiply inputs by this (e.g. 0.00392 for images in [0, 1]); default 1")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--image-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                         help="resize images to this size (for models that take any image size)")
    predict.set_defaults(run=_predict)

    demo = command("demo", "train a small CNN on scikit-learn digits with logit logging, expose and export it",
                   "keras-logits demo --epochs 5 --output-dir demo_output")
    demo.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    demo.add_argument("--rows", type=int, default=8, help="predictions to print (default 8)")
    demo.add_argument("--output-dir", default="keras_logits_demo",
                      help="where the logs and the export go (default ./keras_logits_demo)")
    demo.set_defaults(run=_demo)
    return parser


MAX_ERROR_CHARACTERS = 400


def _one_line(error: BaseException) -> str:
    """The error message on one line, cut to MAX_ERROR_CHARACTERS (a model config can be kilobytes)."""
    message = " ".join(str(error).split()) or type(error).__name__
    if len(message) <= MAX_ERROR_CHARACTERS:
        return message
    return (f"{message[:MAX_ERROR_CHARACTERS].rstrip()}... ({len(message):,} characters; run with --debug "
            "for the whole message and the traceback)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `keras-logits` console script; returns the exit code."""
    arguments = _parser().parse_args(argv)
    _quiet_tensorflow(arguments.debug, needs_tensorflow=arguments.command in ("export", "predict", "demo"))
    try:
        arguments.run(arguments)
        return 0
    except KeyboardInterrupt:
        print("keras-logits: interrupted", file=sys.stderr)
        return 1
    except Exception as error:  # One line for people; --debug shows the traceback.
        if arguments.debug:
            raise
        print(f"keras-logits: error: {_one_line(error)}", file=sys.stderr)
        return 1


"""Export a classifier with both outputs, verified, and installed atomically."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import keras
import numpy as np

from keras_logits._class_ids import RULES, class_ids
from keras_logits._expose import ensure_exposed
from keras_logits._files import MOVED_ASIDE, remove_stale_temporaries, sibling
from keras_logits._graph import all_layers, model_outputs
from keras_logits.layers import Temperature
from keras_logits.serving import _graph as serving, _verification as verification

FORMATS = ("tf_saved_model", "onnx")
MANIFEST = "keras_logits.json"


def export(
    model: keras.Model,
    path: Union[str, os.PathLike],
    *,
    format: str = "tf_saved_model",
    overwrite: bool = False,
    verify: Union[bool, str] = True,
    class_names: Optional[Sequence[str]] = None,
    features: bool = False,
    sample=None,
    temperature=None,
    head: Optional[str] = None,
    activation: Optional[str] = None,
) -> Path:
    """Exports `model` with `logits`, `probabilities` and `class_id` outputs.

    The export is written into a temporary sibling directory, loaded in a fresh
    Python process that does not import keras_logits (plain TensorFlow or
    onnxruntime), compared with the in-memory model, and only then renamed to
    `path`. An existing export is replaced only with `overwrite=True`; a
    failed or interrupted export leaves it as it was.

    Outputs of the `serving_default` signature (and of the ONNX graph):
    `logits` and `probabilities` (float32), `class_id` (int64: the argmax for
    softmax heads, a 0/1 vector at threshold 0.5 for sigmoid heads) and
    `features` when asked. The batch dimension is dynamic. A
    `keras_logits.json` manifest beside the graph records the head, class
    names, input and output signatures and library versions.

    Args:
        model: An original classifier or a model returned by `expose`.
        path: Directory to create. For ONNX it holds `model.onnx`.
        format: `"tf_saved_model"` or `"onnx"` (needs the `onnx` extra).
        overwrite: Replace an existing export at `path`.
        verify: How to check the export before installing it. `True` or
            `"fresh_process"` (default): load it in a fresh Python process
            that never imports keras_logits or Keras, which proves a consumer
            with plain TensorFlow (or onnxruntime) gets the same outputs,
            independently of anything this process registered or cached; it
            costs a Python and TensorFlow start-up (seconds). `"in_process"`:
            load it with `tf.saved_model.load` (or onnxruntime) in this
            process, which proves the written graph and variables reproduce
            the model's outputs, at a fraction of the cost, but not that the
            export loads without this process' imports. `False`: no check.
            Tolerances: logits 1e-5 of their scale, probabilities 1e-5,
            class ids exact. The manifest records the mode and its seconds.
        class_names: One name per class, recorded in the manifest.
        features: Also export `features`, the tensor feeding the head.
        sample: Inputs to verify with (default: 4 samples built from the
            model's input specs: floats in [0, 1), integer ids below the
            smallest `Embedding` vocabulary, True / 1 for masks, short ASCII
            strings for string inputs; fixed dimensions kept, free ones of
            length `FREE_LENGTH`).
        temperature: Bake a calibration temperature into the export (a fitted
            `TemperatureScaling` or a float; see `expose`). The manifest
            records it.
        head: For a model with several classification outputs, the name of
            the one to export (see `expose`).
        activation: `"softmax"` or `"sigmoid"` when `model` outputs logits
            (KerasHub tasks, models ending in a linear layer); refused for a
            model that applies an activation itself.

    Returns:
        The export directory.

    Example:

    >>> import keras, keras_logits, tempfile, os
    >>> model = keras.Sequential([keras.Input((4,), name="x"),
    ...                           keras.layers.Dense(3, activation="softmax")])
    >>> out = keras_logits.export(model, os.path.join(tempfile.mkdtemp(), "clf"))
    >>> sorted(os.listdir(out))
    ['assets', 'fingerprint.pb', 'keras_logits.json', 'saved_model.pb', 'variables']
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not supported; use one of {FORMATS}.")
    process = _verification_process(verify)
    serving.require_export_backend(format)
    if format == "onnx":
        packages = serving.ONNX_PACKAGES + (("onnxruntime",) if process else ())
        serving.require_packages(packages, "onnx", "ONNX export")
    target = _check_target(Path(path), overwrite)
    exposed, head = ensure_exposed(model, features=features, temperature=temperature, head=head,
                                   activation=activation)
    class_names = _check_class_names(class_names, head)
    graph = serving.serving_model(exposed, activation=head.activation, axis=head.axis)
    sample = sample_inputs(graph) if sample is None else _as_input_dict(graph, sample)
    expected = _expected_outputs(graph, sample, head) if process else None

    staging = sibling(target)
    try:
        try:
            staging.mkdir()
        except OSError as error:
            raise PermissionError(
                f"Cannot export to '{target}': cannot write in '{target.parent}' ({error.strerror})."
            ) from None
        serving.write(graph, str(staging), format)
        checked = None
        if process:
            started = time.perf_counter()
            run = verification.run_consumer if process == "fresh_process" else verification.run_in_process
            actual = run(str(staging), format, sample)
            precision = _precision(graph)
            differences = verification.compare(expected, actual, format, precision, activation=head.activation,
                                               axis=head.axis)
            checked = (differences, verification.tolerances(expected, precision), process,
                       time.perf_counter() - started)
        manifest = _manifest(graph, head, class_names, format, checked, len(next(iter(sample.values()))))
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _install(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def read_manifest(path: Union[str, os.PathLike]) -> dict:
    """Reads the `keras_logits.json` manifest of an export directory.

    Example:

    >>> import keras_logits, pathlib
    >>> reference = pathlib.Path(keras_logits.__file__).parents[1] / "saved_models" / "digits_cnn"
    >>> manifest = read_manifest(reference)
    >>> manifest["head"]["activation"], [o["name"] for o in manifest["outputs"]]
    ('softmax', ['class_id', 'logits', 'probabilities'])
    """
    return json.loads((Path(path) / MANIFEST).read_text())


def loading_example(path: Union[str, os.PathLike]) -> str:
    """Python that loads the SavedModel export at `path` with plain TensorFlow and calls it, for people to copy.

    The inputs are zeros of the exported names, dtypes and shapes (free
    dimensions 1 for the batch, `FREE_LENGTH` for the others).

    Example:

    >>> import keras_logits, pathlib
    >>> print(loading_example(pathlib.Path(keras_logits.__file__).parents[1] / "saved_models" / "digits_cnn"))
    import tensorflow as tf
    serve = tf.saved_model.load("...digits_cnn").signatures["serving_default"]
    outputs = serve(image=tf.zeros([1, 8, 8, 1], tf.float32))  # class_id, logits, probabilities
    """
    manifest = read_manifest(path)
    if manifest["format"] != "tf_saved_model":
        raise ValueError(f"'{path}' is an {manifest['format']} export; loading_example writes SavedModel code. "
                         "Load an ONNX export with onnxruntime.InferenceSession(path/model.onnx).")
    names = ", ".join(output["name"] for output in manifest["outputs"])
    shapes = {spec["name"]: [1] + [FREE_LENGTH if size is None else size for size in spec["shape"][1:]]
              for spec in manifest["inputs"]}
    arguments = ", ".join(f"{name}=tf.zeros({shape}, tf.{spec['dtype']})"
                          for (name, shape), spec in zip(shapes.items(), manifest["inputs"]))
    return ("import tensorflow as tf\n"
            f"serve = tf.saved_model.load(\"{Path(path).absolute()}\").signatures[\"{manifest['signature']}\"]\n"
            f"outputs = serve({arguments})  # {names}")


def _expected_outputs(graph, sample: dict, head) -> dict:
    """What the export must serve for `sample`: the in-memory graph's outputs, class ids by the NumPy rule."""
    expected = serving.outputs_of(graph, sample)
    # Held to the rule itself rather than to the in-graph op that the export was converted from.
    expected["class_id"] = class_ids(expected["probabilities"], head.activation, head.axis)
    return expected


def _check_target(target: Path, overwrite: bool) -> Path:
    target = target.expanduser().absolute()
    if target.parent.is_dir():
        remove_stale_temporaries(target.parent, target=target.name)  # what a killed export left
    if target.is_file() or (target.exists() and not target.is_dir()):
        raise FileExistsError(
            f"Cannot export to '{target}': it is a file. Exports are directories; pass a new "
            "directory path."
        )
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"Cannot export to '{target}': it already exists. Pass overwrite=True to replace it "
            "(the old export stays until the new one has been verified)."
        )
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"Cannot export to '{target}': cannot create '{parent}' ({error.strerror}).") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Cannot export to '{target}': directory '{parent}' is not writable. Choose a path "
            "you can write to."
        )
    return target


def _check_class_names(class_names, head) -> Optional[list]:
    if class_names is None:
        return None
    names = [str(name) for name in class_names]
    allowed = {head.num_classes}
    if head.activation == "sigmoid" and head.num_classes == 1:
        allowed.add(2)  # Binary: [negative, positive].
    if head.num_classes is not None and len(names) not in allowed:
        raise ValueError(
            f"class_names has {len(names)} names, but the head has {head.num_classes} classes. "
            "Pass one name per class, in class-id order."
        )
    return names


def _verification_process(verify) -> Optional[str]:
    if verify is True or verify == "fresh_process":
        return "fresh_process"
    if verify is False or verify is None:
        return None
    if verify == "in_process":
        return "in_process"
    raise ValueError(f"verify={verify!r} is not supported; use True ('fresh_process'), 'in_process' or False.")


FREE_LENGTH = 4  # Short: models with a maximum sequence length (position embeddings) accept it.
_WORDS = np.array(["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away"])


def sample_inputs(model, batch_size: int = 4) -> dict:
    """Inputs built from `model`'s input specs, keyed by input name, for verifying an export.

    Floats are uniform in [0, 1); integers are ids below the smallest
    vocabulary of the model's `Embedding`/`CategoryEncoding` layers (0 or 1
    without one), 1 for inputs whose name says mask; bools are True; strings
    are short ASCII sentences. Fixed dimensions are kept, free ones get length
    `FREE_LENGTH`.

    Example:

    >>> import keras
    >>> ids = keras.Input((None,), dtype="int32", name="token_ids")
    >>> model = keras.Model(ids, keras.layers.Embedding(10, 2)(ids))
    >>> sample = sample_inputs(model)
    >>> sample["token_ids"].shape, sample["token_ids"].dtype.name, int(sample["token_ids"].max()) < 10
    ((4, 4), 'int32', True)
    """
    rng = np.random.default_rng(0)
    id_limit = _smallest_vocabulary(model)
    sample = {}
    for tensor in model.inputs:
        shape = [batch_size] + [FREE_LENGTH if size is None else size for size in tensor.shape[1:]]
        dtype, name = keras.backend.standardize_dtype(tensor.dtype), _input_name(tensor)
        if dtype == "bool":
            sample[name] = np.ones(shape, dtype="bool")
        elif dtype == "string":
            words = rng.choice(_WORDS, size=shape + [3])
            sample[name] = np.array([" ".join(row) for row in words.reshape(-1, 3)]).reshape(shape)
        elif "int" in dtype:
            if "mask" in name.lower():
                sample[name] = np.ones(shape, dtype=dtype)
            else:
                high = min(id_limit, int(np.iinfo(dtype).max) + 1)
                sample[name] = rng.integers(0, high, size=shape).astype(dtype)
        else:
            sample[name] = rng.random(shape).astype(dtype)
    return sample


def _smallest_vocabulary(model) -> int:
    sizes = []
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.Embedding):
            sizes.append(layer.input_dim)
        elif isinstance(layer, keras.layers.CategoryEncoding):
            sizes.append(layer.num_tokens)
    return min(sizes) if sizes else 2


def _as_input_dict(model, sample) -> dict:
    if isinstance(sample, dict):
        return {name: np.asarray(value) for name, value in sample.items()}
    arrays = list(sample) if isinstance(sample, (list, tuple)) else [sample]
    if len(arrays) != len(model.inputs):
        raise ValueError(f"sample has {len(arrays)} arrays, the model has {len(model.inputs)} inputs.")
    return {_input_name(tensor): np.asarray(array) for tensor, array in zip(model.inputs, arrays)}


def _input_name(tensor) -> str:
    return tensor.name


def _manifest(graph, head, class_names, format, checked, batch_size) -> dict:
    outputs = model_outputs(graph)
    differences, tolerances, process, seconds = checked or (None, None, None, None)
    return {
        "format": format,
        "graph": serving.ONNX_FILE if format == "onnx" else ".",
        "signature": "serving_default" if format == "tf_saved_model" else None,
        "head": {
            "activation": head.activation,
            "num_classes": head.num_classes,
            "class_names": class_names,
            "axis": head.axis,
            "layer": head.layer.name,
            "fused": head.fused,
            "path": list(head.path),
            "class_id": RULES[head.activation],
            "temperature": _temperature(graph),
        },
        "inputs": [{"name": _input_name(t), "shape": list(t.shape),
                    "dtype": keras.backend.standardize_dtype(t.dtype)} for t in graph.inputs],
        "outputs": [{"name": name, "shape": list(outputs[name].shape), "dtype": _exported_dtype(name, outputs[name])}
                    for name in sorted(outputs)],
        "verification": None if differences is None else {
            "consumer": "tf.saved_model.load" if format == "tf_saved_model" else "onnxruntime",
            "process": "fresh" if process == "fresh_process" else "this",
            "seconds": round(seconds, 3),
            "batch_size": batch_size,
            "max_abs_difference": differences,
            "tolerance": tolerances,
        },
        "versions": serving.versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _exported_dtype(name, tensor) -> str:
    # Class ids are int64 in every export; the JAX backend computes int32 and the wrapper casts.
    return "int64" if name == "class_id" else keras.backend.standardize_dtype(tensor.dtype)


def _precision(graph) -> float:
    """The verification tolerance of the lowest precision any layer of `graph` computes in."""
    dtypes = {keras.backend.standardize_dtype(layer.compute_dtype) for layer in all_layers(graph)}
    return max(verification.PRECISION.get(dtype, verification.PRECISION["float32"]) for dtype in dtypes | {"float32"})


def _temperature(graph):
    """The calibration temperature baked into the graph, or None."""
    values = [layer.temperature for layer in all_layers(graph) if isinstance(layer, Temperature)]
    return values[0] if len(values) == 1 else (values or None)


def _install(staging: Path, target: Path) -> None:
    """Renames `staging` to `target`; an old export is moved aside first and restored on failure."""
    if not target.exists():
        os.rename(staging, target)
        return
    backup = sibling(target, MOVED_ASIDE)  # restored by the next export's clean-up if this process dies here
    os.rename(target, backup)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)

"""Export a classifier with both outputs, verified, and installed atomically."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional, Sequence, Union

import keras
import numpy as np

from keras_logits import serving, verification
from keras_logits.expose_model import ensure_exposed
from keras_logits.files import process_alive
from keras_logits.layers import Temperature

FORMATS = ("tf_saved_model", "onnx")
MANIFEST = "keras_logits.json"
_TEMPORARY, _BACKUP = "tmp", "old"


def export(
    model: keras.Model,
    path: Union[str, os.PathLike],
    *,
    format: str = "tf_saved_model",
    overwrite: bool = False,
    verify: bool = True,
    class_names: Optional[Sequence[str]] = None,
    features: bool = False,
    sample=None,
    temperature=None,
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
        verify: Check the export in a fresh process before installing it.
            Tolerances: logits 1e-5 of their scale, probabilities 1e-5,
            class ids exact.
        class_names: One name per class, recorded in the manifest.
        features: Also export `features`, the tensor feeding the head.
        sample: Inputs to verify with (default: 4 random samples).
        temperature: Bake a calibration temperature into the export (a fitted
            `TemperatureScaling` or a float; see `expose`). The manifest
            records it.

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
    serving.require_export_backend(format)
    if format == "onnx":
        packages = serving.ONNX_PACKAGES + (("onnxruntime",) if verify else ())
        serving.require_packages(packages, "onnx", "ONNX export")
    target = _check_target(Path(path), overwrite)
    exposed, head = ensure_exposed(model, features=features, temperature=temperature)
    class_names = _check_class_names(class_names, head)
    graph = serving.serving_model(exposed, activation=head.activation, axis=head.axis)
    sample = _sample(graph) if sample is None else _as_input_dict(graph, sample)
    expected = graph.predict_on_batch(sample if len(sample) > 1 else next(iter(sample.values())))
    expected = {name: np.asarray(value) for name, value in expected.items()}
    expected["class_id"] = expected["class_id"].astype("int64")  # int32 from the JAX backend

    staging = target.parent / f".{target.name}.{_TEMPORARY}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        try:
            staging.mkdir()
        except OSError as error:
            raise PermissionError(
                f"Cannot export to '{target}': cannot write in '{target.parent}' ({error.strerror})."
            ) from None
        serving.write(graph, str(staging), format)
        differences = None
        if verify:
            actual = verification.run_consumer(str(staging), format, sample)
            differences = verification.compare(expected, actual, format)
        manifest = _manifest(graph, head, class_names, format, expected, differences,
                             len(next(iter(sample.values()))))
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


def _check_target(target: Path, overwrite: bool) -> Path:
    target = target.expanduser().absolute()
    if target.parent.is_dir():
        _remove_stale_siblings(target)
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


def _sample(model, batch_size: int = 4) -> dict:
    """Random inputs matching the model's input specs (float in [0, 1), integers 0)."""
    rng = np.random.default_rng(0)
    sample = {}
    for tensor in model.inputs:
        shape = [batch_size] + [32 if size is None else size for size in tensor.shape[1:]]
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if "float" in dtype:
            sample[_input_name(tensor)] = rng.random(shape).astype(dtype)
        else:
            sample[_input_name(tensor)] = np.zeros(shape, dtype=dtype)
    return sample


def _as_input_dict(model, sample) -> dict:
    if isinstance(sample, dict):
        return {name: np.asarray(value) for name, value in sample.items()}
    arrays = list(sample) if isinstance(sample, (list, tuple)) else [sample]
    if len(arrays) != len(model.inputs):
        raise ValueError(f"sample has {len(arrays)} arrays, the model has {len(model.inputs)} inputs.")
    return {_input_name(tensor): np.asarray(array) for tensor, array in zip(model.inputs, arrays)}


def _input_name(tensor) -> str:
    return tensor.name


def _manifest(graph, head, class_names, format, expected, differences, batch_size) -> dict:
    outputs = dict(graph._outputs_struct)
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
            "class_id": "argmax" if head.activation == "softmax" else "probabilities >= 0.5",
            "temperature": _temperature(graph),
        },
        "inputs": [{"name": _input_name(t), "shape": list(t.shape),
                    "dtype": keras.backend.standardize_dtype(t.dtype)} for t in graph.inputs],
        "outputs": [{"name": name, "shape": list(outputs[name].shape), "dtype": str(expected[name].dtype)}
                    for name in sorted(expected)],
        "verification": None if differences is None else {
            "consumer": "tf.saved_model.load" if format == "tf_saved_model" else "onnxruntime",
            "batch_size": batch_size,
            "max_abs_difference": differences,
            "tolerance": verification.tolerances(expected),
        },
        "versions": serving.versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _temperature(graph):
    """The calibration temperature baked into the graph, or None."""
    values = [layer.temperature for layer in graph._flatten_layers(include_self=False, recursive=True)
              if isinstance(layer, Temperature)]
    return values[0] if len(values) == 1 else (values or None)


def _install(staging: Path, target: Path) -> None:
    """Renames `staging` to `target`; an old export is moved aside first and restored on failure."""
    if not target.exists():
        os.rename(staging, target)
        return
    backup = target.parent / f".{target.name}.{_BACKUP}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(target, backup)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _remove_stale_siblings(target: Path) -> None:
    """Cleans what a killed export left: temp dirs are removed, a moved-aside export restored."""
    for sibling in target.parent.glob(f".{target.name}.*-*-*"):
        kind, _, rest = sibling.name[len(target.name) + 2:].partition("-")
        pid = rest.split("-")[0]
        # This process' own leftovers are stale too: its exports clean up before returning.
        if kind not in (_TEMPORARY, _BACKUP) or not pid.isdigit() or (
                int(pid) != os.getpid() and process_alive(int(pid))):
            continue
        if kind == _BACKUP and not target.exists():
            os.rename(sibling, target)
        else:
            shutil.rmtree(sibling, ignore_errors=True)

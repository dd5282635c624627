"""Read prediction inputs for the command line: .npy, .npz, .csv or a folder of images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def read_inputs(path: Union[str, os.PathLike], input_shape: tuple, *, scale: float = 1.0) -> np.ndarray:
    """Reads a batch of inputs and checks it against the model's `input_shape` (batch first).

    CSV rows are reshaped to the input shape; images are resized to its height
    and width and converted to its channel count. Values are multiplied by
    `scale`. Pickled `.npy`/`.npz` content is refused.

    Example:

    >>> import tempfile, os, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.zeros((2, 4)))
    >>> read_inputs(path, (None, 4)).shape
    (2, 4)
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such input: '{path}'.")
    expected = tuple(input_shape[1:])
    if path.is_dir():
        x = _read_images(path, expected)
    elif path.suffix == ".npy":
        x = np.load(path, allow_pickle=False)
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            names = arrays.files
            if len(names) == 1:
                x = arrays[names[0]]
            elif "x" in names:
                x = arrays["x"]
            else:
                raise ValueError(f"'{path}' holds arrays {names}; name the input array 'x' or keep one array.")
    elif path.suffix == ".csv":
        x = _read_csv(path, expected)
    else:
        raise ValueError(f"Cannot read '{path}': expected .npy, .npz, .csv or a folder of images.")
    x = np.asarray(x, dtype="float32") * np.float32(scale)
    found = tuple(x.shape[1:])
    if len(found) != len(expected) or any(e is not None and e != f for e, f in zip(expected, found)):
        raise ValueError(
            f"Input '{path}' has shape {tuple(x.shape)}, but the model expects (batch, "
            f"{', '.join(str(e) for e in expected)})."
        )
    return x


def _read_csv(path: Path, expected: tuple) -> np.ndarray:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    try:
        float(lines[0].split(",")[0])
    except (ValueError, IndexError):
        lines = lines[1:]  # A header row.
    try:
        rows = np.array([[float(v) for v in line.split(",")] for line in lines], dtype="float32")
    except ValueError as error:
        raise ValueError(f"Cannot read '{path}': {error}. Expected numbers, one sample per row.") from None
    if None not in expected and rows.ndim == 2 and rows.shape[1] == int(np.prod(expected)):
        return rows.reshape((len(rows),) + expected)
    return rows


def _read_images(folder: Path, expected: tuple) -> np.ndarray:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"Folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    if len(expected) != 3:
        raise ValueError(f"The model takes inputs of shape {expected}, not images (height, width, channels).")
    height, width, channels = expected
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise ValueError(f"The model takes {channels}-channel inputs; images need 1, 3 or 4 channels.")
    images = []
    for file in files:
        with Image.open(file) as image:
            image = image.convert(mode)
            if height and width:
                image = image.resize((width, height))
            array = np.asarray(image, dtype="float32")
        images.append(array.reshape(array.shape[:2] + (channels,)))
    return np.stack(images)

"""Read prediction inputs for the command line: .npy, .npz, .csv, .txt or a folder of images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from keras_logits._probe import check_input

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def read_inputs(path: Union[str, os.PathLike], input_shape: tuple, *, scale: float = 1.0, dtype: str = "float32",
                image_size: Optional[Sequence[int]] = None) -> np.ndarray:
    """Reads a batch of inputs and checks it against the model's `input_shape` (batch first) and `dtype`.

    Accepted: `.npy`, `.npz` (one array, or one named `x`), `.csv` (one sample
    per row, reshaped to the input shape), `.txt` (string inputs: one example
    per line) and a folder of images (resized to the input's height and width,
    or to `image_size` for models that take any size; converted to its channel
    count). The model's dtype is kept: integer ids are never rounded through
    float32, and must be whole numbers within the dtype's range. `scale`
    multiplies float inputs only. Pickled `.npy`/`.npz` content is refused.

    Example:

    >>> import tempfile, os, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "ids.npy")
    >>> np.save(path, np.array([[2**24 + 1, 7]]))
    >>> read_inputs(path, (None, 2), dtype="int32")
    array([[16777217,        7]], dtype=int32)
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such input: '{path}'.")
    expected = tuple(input_shape[1:])
    if path.is_dir():
        x = _read_images(path, expected, image_size)
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
        x = _read_csv(path, expected, dtype)
    elif path.suffix == ".txt":
        x = np.array([line for line in path.read_text().splitlines() if line.strip()])
    else:
        raise ValueError(f"Cannot read '{path}': expected .npy, .npz, .csv, .txt or a folder of images.")
    x = np.asarray(x)
    if x.ndim == 1 and expected == (1,):
        x = x[:, None]  # One string (or id) per sample for an input of shape (batch, 1).
    x = check_input(x, tuple(input_shape), dtype, source=f"input '{path}'")
    if dtype not in ("string", "bool") and "int" not in dtype:
        x = x * np.asarray(scale, dtype=x.dtype)
    return x


def _read_csv(path: Path, expected: tuple, dtype: str) -> np.ndarray:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    try:
        float(lines[0].split(",")[0])
    except (ValueError, IndexError):
        lines = lines[1:]  # A header row.
    try:
        # Integers are parsed from their text, so ids above 2^24 (or 2^53) stay exact.
        parse = int if "int" in dtype else float
        rows = np.array([[parse(v) for v in line.split(",")] for line in lines],
                        dtype="int64" if "int" in dtype else "float64")
    except ValueError as error:
        raise ValueError(f"Cannot read '{path}': {error}. Expected numbers, one sample per row.") from None
    if None not in expected and rows.ndim == 2 and rows.shape[1] == int(np.prod(expected)):
        return rows.reshape((len(rows),) + expected)
    return rows


def _read_images(folder: Path, expected: tuple, image_size) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("Reading a folder of images needs Pillow: pip install 'keras-logits[cli]' "
                          "(or pip install pillow); .npy, .csv and .txt inputs need nothing more.") from None

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"Folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    if len(expected) != 3:
        raise ValueError(f"The model takes inputs of shape {expected}, not images (height, width, channels).")
    height, width, channels = expected
    if image_size is not None:
        if (height, width) != (None, None) and (height, width) != tuple(image_size):
            raise ValueError(f"--image-size {image_size[0]} {image_size[1]} differs from the model's input size "
                             f"{height}x{width}; leave it out (images are resized to the model's size).")
        height, width = image_size
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
    sizes = sorted({image.shape[:2] for image in images})
    if len(sizes) > 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sizes[:4]) + (", ..." if len(sizes) > 4 else "")
        raise ValueError(f"The images in '{folder}' have {len(sizes)} different sizes ({listed}) and the model "
                         f"takes any size, but one batch needs one: pass --image-size HEIGHT WIDTH to resize them.")
    return np.stack(images)

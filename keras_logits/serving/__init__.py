"""Export and serving: the SavedModel/ONNX graph, its verification and the manifest.

The only part of the package (with the TensorFlow-only distribution path) that imports
TensorFlow, and only when an export is written or read. `export` and `read_manifest` are also
re-exported from `keras_logits`; the command line tool reaches this package through the names here.
"""

from keras_logits.serving._export import MANIFEST, export, read_manifest
from keras_logits.serving._graph import EXPORT_BACKENDS
from keras_logits.serving._scan import check_saved_model

__all__ = ["EXPORT_BACKENDS", "MANIFEST", "check_saved_model", "export", "read_manifest"]

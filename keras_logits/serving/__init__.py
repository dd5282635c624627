"""Export and serving: the SavedModel/ONNX graph, its verification, the manifest, TensorFlow at run time.

The only part of the package (with the TensorFlow-only distribution path) that imports
TensorFlow, and only when an export is written or read or a function of `_runtime` is called.
`export` and `read_manifest` are also re-exported from `keras_logits`; the command line tool
reaches this package through the names here.
"""

from keras_logits.serving._export import MANIFEST, export, loading_example, read_manifest
from keras_logits.serving._graph import EXPORT_BACKENDS
from keras_logits.serving._runtime import (ServingSignature, as_model_input, call_saved_model, load_saved_model,
                                           start_tensorflow, tensorflow_installed)
from keras_logits.serving._scan import check_saved_model

__all__ = ["EXPORT_BACKENDS", "MANIFEST", "ServingSignature", "as_model_input", "call_saved_model",
           "check_saved_model", "export", "load_saved_model", "loading_example", "read_manifest", "start_tensorflow",
           "tensorflow_installed"]

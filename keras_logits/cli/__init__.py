"""The `keras-logits` command line tool: inspect, expose, predict, export and the demo.

`main` parses the arguments and quiets TensorFlow's start-up logs before Keras is imported;
`_loading` reads `.keras`/`.h5` files and SavedModels (safe mode), `_inputs` reads prediction
inputs, `demo` is the end-to-end example the README's first command runs.
"""

from keras_logits.cli._main import main

__all__ = ["main"]

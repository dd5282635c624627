"""The `keras-logits` command line tool: inspect, expose, predict, export and the demo.

`main` (`_main`) parses the arguments and quiets TensorFlow's start-up logs before Keras is
imported, then runs a subcommand of `_commands`; `_loading` reads `.keras`/`.h5` files (safe
mode), `_inputs` reads prediction inputs, `_tables` prints predictions, `demo` is the end-to-end
example the README's first command runs. TensorFlow is reached only through `keras_logits.serving`.
"""

from keras_logits.cli._main import main

__all__ = ["main"]

"""The `keras-logits` command line tool: argument parsing and printing only."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence


def _quiet_tensorflow(debug: bool) -> None:
    """Imports Keras (and TensorFlow) with their C++ start-up log lines hidden.

    TensorFlow 2.21 prints oneDNN / CUDA lines through absl before
    TF_CPP_MIN_LOG_LEVEL is read, so file descriptor 2 is pointed at /dev/null
    while the backend starts. `--debug` shows everything.
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

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.get_logger().setLevel("ERROR")
                tf.config.list_physical_devices()  # Probes CUDA now, while quiet.
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-logits",
        description="Find a Keras classifier's logits and get them with its probabilities.",
    )
    parser.add_argument("--debug", action="store_true", help="show TensorFlow logs and tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="train a small CNN on scikit-learn digits, expose its logits, print a table",
        description="Train a small CNN on scikit-learn's bundled digits, expose it and print "
        "logits and probabilities.\n\nExample:\n  keras-logits demo --epochs 5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    demo.add_argument("--rows", type=int, default=8, help="predictions to print (default 8)")
    demo.add_argument("--output-dir", default="keras_logits_demo",
                      help="where the export (and logs) go (default ./keras_logits_demo)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `keras-logits` console script; returns the exit code."""
    arguments = _parser().parse_args(argv)
    _quiet_tensorflow(arguments.debug)
    try:
        if arguments.command == "demo":
            from keras_logits.demo import run_demo

            run_demo(epochs=arguments.epochs, rows=arguments.rows, output_dir=arguments.output_dir)
        return 0
    except Exception as error:  # One line for people; --debug shows the traceback.
        if arguments.debug:
            raise
        print(f"keras-logits: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

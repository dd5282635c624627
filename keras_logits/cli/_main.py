"""The `keras-logits` command line tool: argument parsing, the quiet start and dispatch.

The subcommands' bodies are in `_commands`, imported once TensorFlow's start-up lines are
hidden. Exit codes: 0 success, 1 failure (one line on stderr, `--debug` for the traceback),
2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence


def _quiet_start(debug: bool, needs_tensorflow: bool = False) -> None:
    """Imports Keras (and TensorFlow) with their C++ start-up log lines hidden.

    TensorFlow 2.21 prints oneDNN / CUDA lines through absl before
    TF_CPP_MIN_LOG_LEVEL is read, so file descriptor 2 is pointed at /dev/null
    while the backend starts. On the JAX backend TensorFlow is started here
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

            from keras_logits import serving

            if keras.backend.backend() == "tensorflow" or (needs_tensorflow and serving.tensorflow_installed()):
                serving.start_tensorflow()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


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

    expose = command("expose", "write a .keras model that returns logits and probabilities",
                     "keras-logits expose model.keras model_exposed.keras --features", (common, model_options))
    expose.add_argument("model", help=".keras or .h5 model file")
    expose.add_argument("output", help="the .keras file to write")
    expose.add_argument("--features", action="store_true", help="also output the features feeding the head")
    expose.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")

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

    demo = command("demo", "train a small CNN on scikit-learn digits with logit logging, expose and export it",
                   "keras-logits demo --epochs 5 --output-dir demo_output")
    demo.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    demo.add_argument("--rows", type=int, default=8, help="predictions to print (default 8)")
    demo.add_argument("--output-dir", default="keras_logits_demo",
                      help="where the logs and the export go (default ./keras_logits_demo)")
    return parser


MAX_ERROR_CHARACTERS = 400


def _one_line(error: BaseException) -> str:
    """The error message on one line, cut to MAX_ERROR_CHARACTERS (a model config can be kilobytes)."""
    message = " ".join(_for_the_command_line(str(error)).split()) or type(error).__name__
    if len(message) <= MAX_ERROR_CHARACTERS:
        return message
    return (f"{message[:MAX_ERROR_CHARACTERS].rstrip()}... ({len(message):,} characters; run with --debug "
            "for the whole message and the traceback)")


def _for_the_command_line(message: str) -> str:
    """`message` with the advice to choose a head given as this tool's option, not the Python API's."""
    from keras_logits.head import CHOOSE_A_HEAD

    return message.replace(CHOOSE_A_HEAD, "Pick one with --head NAME.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `keras-logits` console script; returns the exit code."""
    arguments = _parser().parse_args(argv)
    _quiet_start(arguments.debug, needs_tensorflow=arguments.command in ("export", "predict", "demo"))
    try:
        from keras_logits.cli import _commands

        getattr(_commands, arguments.command)(arguments)
        return 0
    except KeyboardInterrupt:
        print("keras-logits: interrupted", file=sys.stderr)
        return 1
    except Exception as error:  # One line for people; --debug shows the traceback.
        if arguments.debug:
            raise
        print(f"keras-logits: error: {_one_line(error)}", file=sys.stderr)
        return 1


"""Refuse SavedModels whose graphs touch files, run Python or print, before TensorFlow loads them.

Loading a SavedModel runs its checkpoint-restore function and calling a
signature runs whatever ops its function holds: a SavedModel from someone
else can write files (`tf.io.write_file`), read them, or call back into
Python. `check_saved_model` reads `saved_model.pb` as a protocol buffer
(nothing is loaded or run) and looks at every op of every meta graph: the
top-level graph of each, and every function in its library, which holds the
call graphs of all signatures and of all restored `tf.function`s, including
functions that no signature calls.

What is checked: the ops of `DENIED_OPS`, TensorFlow's own `saved_model_cli
scan` denylist (WriteFile, ReadFile, PrintV2) plus ops that run Python
(PyFunc, EagerPyFunc), print (Print), list, read or write files (MatchingFiles,
file readers, dataset readers/writers, summary writers) and the checkpoint ops
(Save/Restore*). Checkpoint ops are allowed in one place only: the functions
that the meta graph's `saver_def` names (TensorFlow's own save and restore of
the variables, which read and write `variables/`) and that nothing else
calls, and only those checkpoint ops there; any other denied op in them is
refused too.

What is not checked: the values of variables and constants, ops that read the
SavedModel's own `assets/` (vocabulary tables), the numerical behaviour of the
graph, resource exhaustion (a graph can still loop or allocate a lot), and
custom ops from shared libraries (TensorFlow refuses to load an unregistered
op anyway).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

# tensorflow/python/tools/saved_model_cli.py's _OP_DENYLIST, then Python, printing and file ops.
DENIED_OPS = frozenset({
    "WriteFile", "ReadFile", "PrintV2",
    "PyFunc", "PyFuncStateless", "EagerPyFunc", "Print",
    "MatchingFiles", "WholeFileReader", "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2",
    "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "TFRecordReader", "TFRecordReaderV2",
    "LMDBReader", "IdentityReader", "IdentityReaderV2", "ReaderRead", "ReaderReadV2",
    "TextLineDataset", "TFRecordDataset", "TFRecordDatasetV2", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "DatasetToTFRecord", "SaveDataset", "SaveDatasetV2", "LoadDataset",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary", "WriteScalarSummary",
    "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary",
    "WriteRawProtoSummary", "ImportEvent", "FlushSummaryWriter",
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount", "DebugNumericSummary",
    "DebugNumericSummaryV2", "ImmutableConst",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
})
# TensorFlow's checkpoint machinery: allowed inside the saver_def's own functions only.
CHECKPOINT_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints", "Save", "SaveSlices", "Restore",
                            "RestoreSlice"})


class UnsafeSavedModelError(ValueError):
    """The SavedModel's graphs hold ops that touch files, run Python or print."""


def denied_ops(path: Union[str, os.PathLike]) -> dict:
    """`{op type: [where]}` for every denied op in the SavedModel at `path`; empty when none.

    `where` names the function (or `"<graph>"` for a meta graph's top level).

    Example:

    >>> import keras_logits, pathlib
    >>> reference = pathlib.Path(keras_logits.__file__).parents[1] / "saved_models" / "digits_cnn"
    >>> denied_ops(reference)
    {}
    """
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    found = {}
    for meta_graph in saved_model.meta_graphs:
        graph = meta_graph.graph_def
        functions = {function.signature.name: function for function in graph.library.function}
        saver = _saver_functions(meta_graph, functions)
        places = [("<graph>", graph.node)] + [(name, function.node_def) for name, function in functions.items()]
        for where, nodes in places:
            for node in nodes:
                allowed = where in saver and node.op in CHECKPOINT_OPS
                if node.op in DENIED_OPS and not allowed:
                    found.setdefault(node.op, [])
                    if where not in found[node.op]:
                        found[node.op].append(where)
    return found


def check_saved_model(path: Union[str, os.PathLike], *, unsafe: bool = False) -> None:
    """Raises `UnsafeSavedModelError` naming the denied ops of the SavedModel at `path`, unless `unsafe`.

    Example:

    >>> import keras_logits, pathlib
    >>> check_saved_model(pathlib.Path(keras_logits.__file__).parents[1] / "saved_models" / "digits_cnn")
    """
    if unsafe:
        return
    found = denied_ops(path)
    if found:
        ops = ", ".join(f"{op} (in {', '.join(places[:3])}{', ...' if len(places) > 3 else ''})"
                        for op, places in sorted(found.items()))
        raise UnsafeSavedModelError(
            f"Refusing to load SavedModel '{path}': its graph has ops that touch files, run Python or print: "
            f"{ops}. Pass --unsafe (unsafe=True) only if you trust where it came from."
        )


def _saver_functions(meta_graph, functions: dict) -> set:
    """Functions only the saver_def's save and restore nodes call (transitively), nothing else.

    A saver function that a signature or another function also calls is not
    exempt: it could write a checkpoint wherever its caller says.
    """
    saver_def = meta_graph.saver_def
    roots = {name.split(":")[0] for name in (saver_def.save_tensor_name, saver_def.restore_op_name) if name}
    nodes = meta_graph.graph_def.node
    from_saver = _reach([name for node in nodes if node.name in roots for name in _called(node)], functions)
    others = [name for node in nodes if node.name not in roots for name in _called(node)]
    # A library function the saver does not call can be restored and called as a tf.function.
    others += [callee for name in set(functions) - from_saver for node in functions[name].node_def
               for callee in _called(node)]
    return from_saver - _reach(others, functions)


def _reach(pending: list, functions: dict) -> set:
    reached = set()
    while pending:
        name = pending.pop()
        if name in reached or name not in functions:
            continue
        reached.add(name)
        for node in functions[name].node_def:
            pending.extend(_called(node))
    return reached


def _called(node) -> list:
    """Functions a node calls through its attributes (StatefulPartitionedCall `f`, If/While branches)."""
    names = []
    for value in node.attr.values():
        if value.func.name:
            names.append(value.func.name)
        names.extend(function.name for function in value.list.func)
    return names

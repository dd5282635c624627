"""Writes the tutorial notebooks from the cells below and executes them in place (outputs committed).

    python notebooks/build_notebooks.py [04 05 ...]   # all, or the notebooks whose names start so

Each notebook runs on CPU in well under two minutes with bundled data; the test suite executes
them again (tests/integration/test_notebooks.py).
"""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
SETUP = """import os
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, keras, keras_logits
keras.utils.set_random_seed(0)"""

NOTEBOOKS = {
    "01_expose_logits.ipynb": [
        ("md", "# Expose the logits of a Keras classifier\n\nMost `keras.applications` models fuse the "
               "softmax into their last `Dense`. This notebook shows the usual `layers[-2]` recipe failing on "
               "a real architecture, the `log(p)` workaround losing information, and `keras_logits.expose` "
               "giving both outputs in one pass, checked against an independent reference."),
        ("code", SETUP),
        ("md", "## The `layers[-2]` trap\n\n`weights=None` keeps the notebook offline; the graph is the real one."),
        ("code", """model = keras.applications.ResNet50(weights=None, classes=10, input_shape=(64, 64, 3))
images = np.random.default_rng(0).uniform(0, 255, (8, 64, 64, 3)).astype("float32")
penultimate = keras.Model(model.inputs, model.layers[-2].output)
print("model.layers[-2]:", model.layers[-2].name, type(model.layers[-2]).__name__)
print("its output shape:", penultimate.predict(images, verbose=0).shape, "- pooled features, not 10 logits")"""),
        ("md", "The reference logits: the same architecture and weights with `classifier_activation=None`."),
        ("code", """reference = keras.applications.ResNet50(weights=None, classes=10, input_shape=(64, 64, 3),
                                        classifier_activation=None)
reference.set_weights(model.get_weights())
true_logits = reference.predict(images, verbose=0)
print(true_logits[:2].round(4))"""),
        ("md", "## `log(p)` is not the logits\n\nLogits are defined up to a constant, so compare "
               "centred values. Softmax saturates in float32: once a class dominates, the small "
               "probabilities underflow and `log(p)` becomes `-inf`."),
        ("code", """confident = np.array([[30.0, 0.0, -80.0, 5.0]], "float32")
p = keras.ops.convert_to_numpy(keras.ops.softmax(confident))
with np.errstate(divide="ignore"):
    recovered = np.log(p)
print("probabilities:", p)
print("log(p) - mean:", recovered - recovered[np.isfinite(recovered)].mean())
print("true logits - mean:", confident - confident.mean())"""),
        ("md", "## `find_head` and `expose`"),
        ("code", """head = keras_logits.find_head(model)
print(head.describe())
exposed = keras_logits.expose(model, features=True)
outputs = exposed.predict(images, verbose=0)
print({name: value.shape for name, value in outputs.items()})
print("max |logits - reference|:", np.abs(outputs["logits"] - true_logits).max())
print("max |probabilities - original|:", np.abs(outputs["probabilities"] - model.predict(images, verbose=0)).max())
print("parameters shared:", exposed.count_params() == model.count_params())"""),
        ("md", "Every `keras.applications` model we test (11 of them) is checked the same way in "
               "`tests/test_zoo.py`; only MobileNetV3 keeps a separate `Activation`, so only there "
               "`layers[-2]` happens to be right."),
    ],
    "02_logging_during_fit.ipynb": [
        ("md", "# Log logits and probabilities during `fit`\n\nTrain on scikit-learn's digits with the "
               "in-step metrics and `LogitsLogger`, then read the logs back."),
        ("code", SETUP + "\nimport tempfile, pandas as pd, matplotlib.pyplot as plt\n"
                         "from keras_logits.demo import build_digits_cnn, load_digits\n"
                         "(x_train, y_train), (x_test, y_test) = load_digits()"),
        ("code", """exposed = keras_logits.expose(build_digits_cnn())
exposed.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                metrics={"logits": ["sparse_categorical_accuracy", *keras_logits.metrics.default_metrics()]})
log_dir = tempfile.mkdtemp(prefix="digits-logs-")
logger = keras_logits.LogitsLogger((x_test[:256], y_test[:256]), log_dir=log_dir,
                                   csv_path=os.path.join(log_dir, "metrics.csv"))
history = exposed.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=12, batch_size=64,
                      verbose=0, callbacks=[logger])
print(sorted(history.history)[:6], "...")"""),
        ("md", "## The CSV: one row per epoch"),
        ("code", """table = pd.read_csv(os.path.join(log_dir, "metrics.csv"))
table[["epoch", "loss", "logits_ece", "probe_logits_ece", "probe_logits_confidence", "probe_logits_accuracy"]].round(4)"""),
        ("code", """fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
table.plot(x="epoch", y=["probe_logits_confidence", "probe_logits_accuracy"], ax=axes[0], title="confidence vs accuracy")
table.plot(x="epoch", y=["probe_logits_ece", "val_logits_ece"], ax=axes[1], title="calibration error")
plt.tight_layout()"""),
        ("md", "## The npz snapshots: how the logits moved"),
        ("code", """first = np.load(os.path.join(log_dir, "keras_logits", "snapshots", "epoch_0000.npz"))
last = np.load(os.path.join(log_dir, "keras_logits", "snapshots", "epoch_0011.npz"))
plt.figure(figsize=(6, 3.5))
plt.hist(first["logits"].max(-1), bins=30, alpha=0.6, label="epoch 0")
plt.hist(last["logits"].max(-1), bins=30, alpha=0.6, label="epoch 11")
plt.xlabel("top-1 logit on the probe"); plt.legend(); plt.tight_layout()"""),
        ("md", "TensorBoard reads the same run: `tensorboard --logdir <log_dir>` shows the scalars "
               "(`logits_…`, `val_logits_…`, `probe_logits_…`, the names `History` and the CSV use) "
               "and the `probe_logits` histograms in the `keras_logits` run."),
    ],
    "03_export_and_serve.ipynb": [
        ("md", "# Export with both outputs and serve without keras-logits"),
        ("code", SETUP + "\nimport tempfile, json\nfrom keras_logits.demo import build_digits_cnn, load_digits\n"
                         "(x_train, y_train), (x_test, y_test) = load_digits()\n"
                         "model = build_digits_cnn()\n"
                         "model.compile(optimizer=keras.optimizers.Adam(1e-2), loss='sparse_categorical_crossentropy')\n"
                         "model.fit(x_train, y_train, epochs=5, batch_size=64, verbose=0);"),
        ("code", """root = tempfile.mkdtemp()
path = keras_logits.export(model, os.path.join(root, "digits"), class_names=[str(d) for d in range(10)])
print(sorted(os.listdir(path)))
print(json.dumps(keras_logits.read_manifest(path)["outputs"], indent=1))"""),
        ("md", "## Plain TensorFlow, as TF Serving or Vertex AI would load it"),
        ("code", """import tensorflow as tf
serve = tf.saved_model.load(str(path)).signatures["serving_default"]
served = serve(image=tf.constant(x_test[:5]))
print({k: v.shape for k, v in served.items()})
print("class ids:", served["class_id"].numpy(), "labels:", y_test[:5])"""),
        ("md", "## onnxruntime"),
        ("code", """import onnxruntime
onnx_path = keras_logits.export(model, os.path.join(root, "digits_onnx"), format="onnx")
session = onnxruntime.InferenceSession(str(onnx_path / "model.onnx"), providers=["CPUExecutionProvider"])
names = [o.name for o in session.get_outputs()]
onnx_outputs = dict(zip(names, session.run(None, {"image": x_test[:5]})))
print("max |onnx - SavedModel| logits:", np.abs(onnx_outputs["logits"] - served["logits"].numpy()).max())"""),
    ],
    "04_calibration_and_ood.ipynb": [
        ("md", "# Calibrate, score out-of-distribution inputs, and catch loss mistakes\n\n"
               "A wide MLP trained for many epochs on 300 of scikit-learn's digits fits its training set "
               "perfectly and is overconfident on new digits. Everything below reads the logits that `expose` "
               "gives, in NumPy float64."),
        ("code", "%matplotlib inline\n" + SETUP + "\nfrom IPython.display import display\nfrom sklearn.metrics import roc_auc_score\n"
                         "from keras_logits import plots, scores\n"
                         "from keras_logits.demo import build_digits_cnn, load_digits\n"
                         "(x_train, y_train), (x_test, y_test) = load_digits()\n"
                         "model = keras.Sequential([keras.Input((8, 8, 1), name='image'), keras.layers.Flatten(),\n"
                         "                          keras.layers.Dense(512, activation='relu'),\n"
                         "                          keras.layers.Dense(10, activation='softmax', name='classifier')])\n"
                         "model.compile(optimizer=keras.optimizers.Adam(1e-3), loss='sparse_categorical_crossentropy')\n"
                         "model.fit(x_train[:300], y_train[:300], epochs=300, batch_size=32, verbose=0)\n"
                         "exposed = keras_logits.expose(model)"),
        ("md", "## Temperature scaling on a held-out split\n\nFit `T` on one half of the test split, "
               "measure on the other half: the fit never sees the evaluation labels."),
        ("code", """logits = exposed.predict(x_test, verbose=0)["logits"]
fit_logits, eval_logits = logits[:180], logits[180:]
fit_labels, eval_labels = y_test[:180], y_test[180:]
scaler = keras_logits.TemperatureScaling().fit(fit_logits, fit_labels)
before = keras_logits.reliability_report(eval_logits, eval_labels, from_logits=True)
after = keras_logits.reliability_report(scaler.transform(eval_logits), eval_labels, from_logits=True)
print(f"temperature {scaler.temperature:.3f}")
print(f"held-out ECE {before.ece:.4f} -> {after.ece:.4f}, NLL {before.nll:.4f} -> {after.nll:.4f}, "
      f"accuracy {before.accuracy:.4f} -> {after.accuracy:.4f}")"""),
        ("md", "## Reliability diagrams, before and after"),
        ("code", """display(plots.reliability_diagram(before, title=f"before: ECE {before.ece:.3f}", figsize=(4, 4.5)))
display(plots.reliability_diagram(after, title=f"T = {scaler.temperature:.2f}: ECE {after.ece:.3f}", figsize=(4, 4.5)))"""),
        ("md", "## Out-of-distribution scores\n\nThe in-distribution set is the held-out digits; the shifted "
               "sets are the same digits with inverted intensities, and uniform noise. Each score's AUROC says "
               "how well it separates them (1.0: perfectly; 0.5: chance). `scores.HIGHER_MEANS_OOD` gives the "
               "direction of each score."),
        ("code", """rng = np.random.default_rng(0)
shifted = {"inverted": 1.0 - x_test[180:], "noise": rng.uniform(0, 1, x_test[180:].shape).astype("float32")}
inside = scores.ood_scores(eval_logits)
rows = []
for name, x_shifted in shifted.items():
    outside = scores.ood_scores(exposed.predict(x_shifted, verbose=0)["logits"])
    for score, higher_means_ood in scores.HIGHER_MEANS_OOD.items():
        values = np.concatenate([inside[score], outside[score]])
        is_ood = np.concatenate([np.zeros(len(inside[score])), np.ones(len(outside[score]))])
        auroc = roc_auc_score(is_ood, values if higher_means_ood else -values)
        rows.append((name, score, round(float(auroc), 3)))
import pandas as pd
pd.DataFrame(rows, columns=["shift", "score", "AUROC"]).pivot(index="score", columns="shift", values="AUROC")"""),
        ("md", "Uniform noise is caught by every score. Inverted digits are not: they get logits as large as "
               "real digits (AUROC near or below 0.5 for `max_logit` and `energy`), a reminder that a confident "
               "score is no proof of being in distribution."),
        ("md", "## `check_model` catches two common mistakes"),
        ("code", """softmax_model = build_digits_cnn()
softmax_model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
inputs = keras.Input((8, 8, 1))
sigmoid_model = keras.Model(inputs, keras.layers.Dense(10, activation="sigmoid")(keras.layers.Flatten()(inputs)))
sigmoid_model.compile(loss="sparse_categorical_crossentropy")
for finding in keras_logits.check_model(softmax_model) + keras_logits.check_model(sigmoid_model):
    print(finding.code, "-", finding.fix)"""),
        ("md", "The first model applies softmax twice (in its last layer and in the loss); the second trains "
               "a sigmoid output with a categorical loss. `LogitsLogger` runs the same check when training "
               "starts and warns."),
    ],
}


NOISE = ("WARNING: All log messages before absl", "I0000 ", "E0000 ", "W0000 ", "To enable the following instructions",
         "INFO:tensorflow:Assets written")


def strip_noise(notebook: nbformat.NotebookNode) -> None:
    """Drops TensorFlow's start-up log lines from stderr outputs, so the notebooks read cleanly."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stderr":
                output.text = "".join(line for line in output.text.splitlines(keepends=True)
                                      if not line.startswith(NOISE))
                if not output.text.strip():
                    continue
            kept.append(output)
        cell.outputs = kept


def build(name: str, cells: list) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_markdown_cell(text) if kind == "md" else nbformat.v4.new_code_cell(text)
                      for kind, text in cells]
    return notebook


def main(selected=()) -> None:
    """Builds every notebook, or those whose name starts with one of `selected` (e.g. `04`)."""
    for name, cells in NOTEBOOKS.items():
        if selected and not name.startswith(tuple(selected)):
            continue
        notebook = build(name, cells)
        NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
        strip_noise(notebook)
        nbformat.write(notebook, HERE / name)
        print("wrote", name)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

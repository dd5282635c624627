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
                         "from keras_logits.cli.demo import build_digits_cnn, load_digits\n"
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
        ("code", SETUP + "\nimport tempfile, json\nfrom keras_logits.cli.demo import build_digits_cnn, load_digits\n"
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
                         "from keras_logits.cli.demo import build_digits_cnn, load_digits\n"
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
print(f"temperature {scaler.temperature_:.3f}")
print(f"held-out ECE {before.ece:.4f} -> {after.ece:.4f}, NLL {before.nll:.4f} -> {after.nll:.4f}, "
      f"accuracy {before.accuracy:.4f} -> {after.accuracy:.4f}")"""),
        ("md", "## Reliability diagrams, before and after"),
        ("code", """display(plots.reliability_diagram(before, title=f"before: ECE {before.ece:.3f}", figsize=(4, 4.5)))
display(plots.reliability_diagram(after, title=f"T = {scaler.temperature_:.2f}: ECE {after.ece:.3f}", figsize=(4, 4.5)))"""),
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
    "05_segmentation_and_tagging.ipynb": [
        ("md", "# Segmentation and token tagging: one prediction per pixel, per token\n\n"
               "A classification head's output is `(batch, ..., classes)`: every axis but the last is a "
               "position. `expose` splits the softmax off a per-pixel `Conv2D` or a per-token `Dense` as it "
               "does for an image classifier, and every consumer (metrics, `LogitsLogger`, calibration, scores) "
               "counts each position as one prediction, leaving out \"void\" labels (`ignore_class`) and padding "
               "(Keras masks). Everything here is synthetic or ships with Python: no downloads."),
        ("code", "%matplotlib inline\n" + SETUP + "\nimport tempfile, matplotlib.pyplot as plt"),
        ("md", "## Segmentation of synthetic shapes\n\n24x24 noisy images with 1-3 shapes each: discs (class 1), "
               "squares (2) and diamonds (3) on background (0), each kind at its own brightness. The outermost "
               "pixels are labelled 255, \"void\", as in Pascal VOC: they count in no loss, metric or statistic."),
        ("code", """VOID = 255
def make_scenes(count, size=24, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 0.5, (count, size, size, 1)).astype("float32")
    masks = np.zeros((count, size, size), "int64")
    rows, cols = np.mgrid[:size, :size]
    for i in range(count):
        for _ in range(rng.integers(1, 4)):
            kind = int(rng.integers(1, 4))
            r, c, s = rng.integers(4, size - 4), rng.integers(4, size - 4), rng.integers(3, 6)
            shape = {1: (rows - r) ** 2 + (cols - c) ** 2 <= s ** 2,
                     2: (abs(rows - r) < s) & (abs(cols - c) < s),
                     3: abs(rows - r) + abs(cols - c) <= s}[kind]
            images[i, shape, 0] += (1.0, 0.6, -0.8)[kind - 1]
            masks[i][shape] = kind
    masks[:, [0, -1], :] = VOID
    masks[:, :, [0, -1]] = VOID
    return images, masks

x, y = make_scenes(600)
x_train, y_train, x_test, y_test = x[:500], y[:500], x[500:], y[500:]
print("pixels per class (0-3, void):", np.bincount(y.ravel())[[0, 1, 2, 3, VOID]])"""),
        ("md", "A small fully convolutional net whose last layer is `Conv2D(4, 1, activation=\"softmax\")`, "
               "the usual segmentation head: the softmax is fused into the convolution, so its logits never exist "
               "as a tensor until `expose` splits it off."),
        ("code", """inputs = keras.Input((24, 24, 1), name="image")
h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", dilation_rate=2)(h)
segmenter = keras.Model(inputs, keras.layers.Conv2D(4, 1, activation="softmax", name="classes")(h), name="segmenter")
print(keras_logits.find_head(segmenter).describe())

exposed = keras_logits.expose(segmenter)
exposed.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=VOID)},
                metrics={"logits": ["sparse_categorical_accuracy",
                                    *keras_logits.metrics.default_metrics(ignore_class=VOID)]})
log_dir = tempfile.mkdtemp(prefix="segmentation-logs-")
logger = keras_logits.LogitsLogger((x_test[:32], y_test[:32]), log_dir=log_dir, ignore_class=VOID)
history = exposed.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=4, batch_size=32,
                      verbose=0, callbacks=[logger])
for name in ("loss", "val_logits_ece", "probe_logits_accuracy", "probe_logits_ece"):
    print(f"{name:22s}", np.round(history.history[name], 4))"""),
        ("md", "The probe values are computed over the pixels that count; the same accuracy from the logits "
               "in NumPy agrees. Keras' own `sparse_categorical_accuracy` has no `ignore_class` and counts every "
               "void pixel as a miss, so it reports a lower number:"),
        ("code", """outputs = exposed.predict(x_test, verbose=0)
logits = outputs["logits"]
counted = y_test != VOID
correct = logits.argmax(-1) == y_test
print("logits:", logits.shape, "probabilities:", outputs["probabilities"].shape)
print(f"probe accuracy over counted pixels: NumPy {correct[:32][counted[:32]].mean():.4f}, "
      f"LogitsLogger {history.history['probe_logits_accuracy'][-1]:.4f}")
print(f"test accuracy: over counted pixels {correct[counted].mean():.4f}, "
      f"void pixels as misses {(correct & counted).mean():.4f}, "
      f"Keras' metric {history.history['val_logits_sparse_categorical_accuracy'][-1]:.4f}")
snapshot = np.load(os.path.join(log_dir, "keras_logits", "snapshots", "epoch_0003.npz"))
print("snapshot arrays:", {name: snapshot[name].shape for name in snapshot.files})"""),
        ("md", "## Per-pixel reliability and temperature scaling\n\nEvery counted pixel is one prediction. "
               "Fit `T` on half of the test images and report on the other half."),
        ("code", """scaler = keras_logits.TemperatureScaling().fit(logits[:50], y_test[:50], ignore_class=VOID)
before = keras_logits.reliability_report(logits[50:], y_test[50:], from_logits=True, ignore_class=VOID)
after = keras_logits.reliability_report(scaler.transform(logits[50:]), y_test[50:], from_logits=True,
                                        ignore_class=VOID)
print(f"temperature {scaler.temperature_:.3f} on {before.num_samples} held-out pixels")
print(f"per-pixel ECE {before.ece:.4f} -> {after.ece:.4f}, NLL {before.nll:.4f} -> {after.nll:.4f}")
print(after.table())"""),
        ("md", "## A predicted mask"),
        ("code", """fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
panels = {"image": x_test[0, ..., 0], "labels (void: -1)": np.where(counted[0], y_test[0], -1),
          "predicted class": logits[0].argmax(-1), "confidence": outputs["probabilities"][0].max(-1)}
for axis, (title, image) in zip(axes, panels.items()):
    classes = title in ("labels (void: -1)", "predicted class")
    axis.imshow(image, cmap="tab10" if classes else "gray", vmin=-1 if classes else None, vmax=9 if classes else None)
    axis.set_title(title); axis.axis("off")
plt.tight_layout()"""),
        ("md", "Dark pixels in the confidence map are where the net hesitates: the edges of the shapes, and here "
               "the square, the kind whose brightness is closest to the noise, after only 4 epochs."),
        ("md", "## Token tagging: every character of Python source code\n\nThe data ships with Python: lines of "
               "a few standard-library modules, each character tagged with the type of the `tokenize` token it "
               "belongs to (name, keyword, operator, number, string, comment, or space). Lines are padded with "
               "character 0 to 64 characters; `Embedding(mask_zero=True)` turns the padding into a Keras mask."),
        ("code", """import io, keyword, tokenize, argparse, json.decoder, string, textwrap

TAGS = ["space", "name", "keyword", "operator", "number", "string", "comment"]
LENGTH = 64

def tag_source(source):
    lines = source.splitlines()
    tags = [np.zeros(len(line), "int64") for line in lines]
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        kind = {tokenize.NAME: 2 if keyword.iskeyword(token.string) else 1, tokenize.OP: 3,
                tokenize.NUMBER: 4, tokenize.STRING: 5, tokenize.COMMENT: 6}.get(token.type)
        if kind is None:
            continue
        (first_row, first_col), (last_row, last_col) = token.start, token.end
        for row in range(first_row, last_row + 1):   # strings can span lines
            start = first_col if row == first_row else 0
            end = last_col if row == last_row else len(lines[row - 1])
            tags[row - 1][start:end] = kind
    return lines, tags

lines, tags = [], []
for module in (argparse, textwrap, json.decoder, string, tokenize):
    with open(module.__file__, encoding="utf-8") as file:
        for line, tag in zip(*tag_source(file.read())):
            if 8 <= len(line) <= LENGTH and line.isascii():
                lines.append(line); tags.append(tag)
order = np.random.default_rng(0).permutation(len(lines))
lines, tags = [lines[i] for i in order], [tags[i] for i in order]
characters = np.zeros((len(lines), LENGTH), "int64")   # 0: padding
labels = np.zeros((len(lines), LENGTH), "int64")
for i, (line, tag) in enumerate(zip(lines, tags)):
    characters[i, :len(line)] = [ord(ch) for ch in line]
    labels[i, :len(line)] = tag
split = int(0.8 * len(lines))
print(len(lines), "lines; characters per tag:", dict(zip(TAGS, np.bincount(labels[characters > 0]).tolist())))"""),
        ("code", """inputs = keras.Input((LENGTH,), dtype="int64", name="characters")
h = keras.layers.Embedding(128, 16, mask_zero=True)(inputs)
h = keras.layers.Bidirectional(keras.layers.GRU(32, return_sequences=True))(h)
tagger = keras.Model(inputs, keras.layers.Dense(len(TAGS), activation="softmax", name="tags")(h), name="tagger")
print(keras_logits.find_head(tagger).describe())

exposed_tagger = keras_logits.expose(tagger)
exposed_tagger.compile(optimizer=keras.optimizers.Adam(1e-2),
                       loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                       metrics={"logits": ["sparse_categorical_accuracy", *keras_logits.metrics.default_metrics()]})
tag_logger = keras_logits.LogitsLogger((characters[split:split + 64], labels[split:split + 64]),
                                       csv_path=os.path.join(tempfile.mkdtemp(), "tagger.csv"))
tag_history = exposed_tagger.fit(characters[:split], labels[:split], epochs=3, batch_size=64, verbose=0,
                                 validation_data=(characters[split:], labels[split:]), callbacks=[tag_logger])
for name in ("loss", "val_logits_sparse_categorical_accuracy", "val_logits_ece", "probe_logits_accuracy"):
    print(f"{name:40s}", np.round(tag_history.history[name], 4))"""),
        ("md", "The mask travels through the exposed model: the loss and the metrics count only real characters. "
               "Checked against NumPy over the unpadded positions, and against the original tagger's own masked loss "
               "(the exposed model trained it: the weights are shared):"),
        ("code", """tag_logits = exposed_tagger.predict(characters[split:], verbose=0)["logits"]
class_ids = tag_logits.argmax(-1)                    # one class id per character
real = characters[split:] > 0
evaluated = exposed_tagger.evaluate(characters[split:], labels[split:], verbose=0, return_dict=True)
print(f"accuracy over real characters, NumPy {(class_ids == labels[split:])[real].mean():.4f}, "
      f"masked metric {evaluated['logits_sparse_categorical_accuracy']:.4f}, "
      f"over every position incl. padding {(class_ids == labels[split:]).mean():.4f}")
tagger.compile(loss="sparse_categorical_crossentropy")
print(f"masked loss: exposed (logits) {evaluated['loss']:.5f}, original (probabilities) "
      f"{tagger.evaluate(characters[split:], labels[split:], verbose=0):.5f}")"""),
        ("md", "Per-character class ids, one letter per tag (`n`ame, `k`eyword, `o`perator, `1` number, "
               "`s`tring, `#` comment, space):"),
        ("code", """letters = " nko1s#"
for i in range(4):
    line = lines[split + i]
    print(line)
    print("".join(letters[c] for c in class_ids[i, :len(line)]))
    print()"""),
    ],
    "06_distillation.ipynb": [
        ("md", "# Knowledge distillation with Keras' `Distiller`, on logits\n\n"
               "`keras.distillation.Distiller` with `LogitsDistillation(temperature=T)` divides the teacher's and "
               "the student's outputs by `T` and applies a softmax: both must output logits. Most classifiers fuse "
               "their softmax into the last `Dense`, and the default loss of `LogitsDistillation` skips the softmax "
               "in Keras 3.15. Neither mistake raises an error. This notebook shows both, then the recipe: "
               "`keras_logits.logits_model` for both models and `KLDistillation` as the loss."),
        ("code", SETUP + "\nfrom keras_logits.cli.demo import build_digits_cnn, load_digits\n"
                         "from keras_logits.distillation import KLDistillation, distillation_loss\n"
                         "(x_train, y_train), (x_test, y_test) = load_digits()\n"
                         "teacher = build_digits_cnn(seed=0)      # softmax fused into its last Dense\n"
                         "teacher.compile(optimizer=keras.optimizers.Adam(1e-2),\n"
                         "                loss='sparse_categorical_crossentropy')\n"
                         "teacher.fit(x_train, y_train, epochs=10, batch_size=64, verbose=0)\n\n"
                         "def build_student():\n"
                         "    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),\n"
                         "                             keras.layers.Dense(16, activation='relu'),\n"
                         "                             keras.layers.Dense(10, activation='softmax', name='head')],\n"
                         "                            name='student')\n\n"
                         "def accuracy(model):\n"
                         "    return float(np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test))\n\n"
                         "print(f'teacher test accuracy {accuracy(teacher):.4f}')"),
        ("md", "## The naive set-up, and what `check_model` says about it"),
        ("code", """naive = keras.distillation.Distiller(teacher=teacher, student=build_student(),
                                     distillation_losses=keras.distillation.LogitsDistillation(temperature=3.0))
naive.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
for finding in keras_logits.check_model(naive):
    print(f"{finding.code} ({finding.output}):\\n  {finding.message}\\n  fix: {finding.fix}\\n")"""),
        ("md", "## The default loss on true logits\n\nThe example of the issue: teacher logits `[2, 0.5, -1]`, "
               "student `[0.1, 0.2, 0.3]`, `T = 2`. The reference is the textbook value, "
               "`T^2 * KL(softmax(t/T) || softmax(s/T))`, in NumPy float64."),
        ("code", """teacher_logits, student_logits, T = np.array([[2.0, 0.5, -1.0]]), np.array([[0.1, 0.2, 0.3]]), 2.0
p = np.exp(teacher_logits / T) / np.exp(teacher_logits / T).sum()
q = np.exp(student_logits / T) / np.exp(student_logits / T).sum()
print(f"{'NumPy reference, T^2 * KL(p || q)':56s} {T**2 * np.sum(p * np.log(p / q)):.4f}")
losses = {
    "LogitsDistillation(T), default loss='kl_divergence'": keras.distillation.LogitsDistillation(T),
    "LogitsDistillation(T, loss=keras.losses.KLDivergence())": keras.distillation.LogitsDistillation(
        T, loss=keras.losses.KLDivergence()),
    "keras_logits KLDistillation(T)": KLDistillation(T),
}
for name, loss in losses.items():
    print(f"{name:56s} {float(loss.compute_loss(teacher_logits, student_logits)):.4f}")"""),
        ("md", "## The recipe: `logits_model` + `KLDistillation`\n\n`logits_model(model)` has one output, the "
               "logits, and shares `model`'s weights: training it trains `model`. The student loss takes "
               "`from_logits=True`. Afterwards the original student, with its softmax, is the trained model."),
        ("code", """student = build_student()
distiller = keras.distillation.Distiller(
    teacher=keras_logits.logits_model(teacher),
    student=keras_logits.logits_model(student),
    distillation_losses=KLDistillation(temperature=3.0),
)
distiller.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
print("check_model findings:", keras_logits.check_model(distiller))
print(f"student accuracy before {accuracy(student):.4f}")
distiller.fit(x_train, y_train, epochs=5, batch_size=64, verbose=0)
print(f"student accuracy after  {accuracy(student):.4f}  (the original model's own predict)")"""),
        ("md", "The distillation loss of a batch, checked against the NumPy formula on logits that come from "
               "the student itself: `expose(student)` gives its logits, and their softmax is its own output."),
        ("code", """teacher_batch = keras_logits.expose(teacher).predict(x_test[:64], verbose=0)
student_batch = keras_logits.expose(student).predict(x_test[:64], verbose=0)
print("student softmax(logits) == student.predict:",
      bool(np.allclose(keras.ops.softmax(student_batch["logits"]), student.predict(x_test[:64], verbose=0), atol=1e-6)))
t, s = teacher_batch["logits"].astype("float64") / 3.0, student_batch["logits"].astype("float64") / 3.0
log_p = t - np.log(np.exp(t - t.max(-1, keepdims=True)).sum(-1, keepdims=True)) - t.max(-1, keepdims=True)
log_q = s - np.log(np.exp(s - s.max(-1, keepdims=True)).sum(-1, keepdims=True)) - s.max(-1, keepdims=True)
reference = 9.0 * np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1))
ours = float(distillation_loss(teacher_batch["logits"], student_batch["logits"], temperature=3.0))
print(f"batch loss: NumPy {reference:.5f}, distillation_loss {ours:.5f}")"""),
        ("md", "On this small problem distillation is no free gain: `python -m benchmarks.distillation_accuracy` "
               "measures the student alone, the naive set-up and this recipe over 3 seeds (table in the README). "
               "What the recipe guarantees is that the temperature and the loss mean what they say."),
    ],
}


NOISE = ("WARNING: All log messages before absl", "I0000 ", "E0000 ", "W0000 ", "To enable the following instructions",
         "INFO:tensorflow:Assets written")


def strip_noise(notebook: nbformat.NotebookNode) -> None:
    """Drops TensorFlow's start-up and retracing log lines from stream outputs, so the notebooks read cleanly."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if output.output_type == "stream":
                output.text = "".join(line for line in output.text.splitlines(keepends=True)
                                      if not line.startswith(NOISE) and "triggered tf.function retracing" not in line)
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

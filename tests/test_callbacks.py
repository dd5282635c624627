"""LogitsLogger: TensorBoard events, CSV, npz snapshots and History, checked against independent math."""

import csv
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

import keras_logits
from keras_logits.callbacks import LogitsLogger
from keras_logits.cli.demo import build_digits_cnn
from tests.test_metrics import numpy_ece, softmax


def compiled_cnn(seed=0, exposed_metrics=False):
    model = build_digits_cnn(seed=seed)
    if not exposed_metrics:
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
        return model
    exposed = keras_logits.expose(model)
    exposed.compile(optimizer=keras.optimizers.Adam(1e-2),
                    loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                    metrics={"logits": keras_logits.metrics.default_metrics()})
    return exposed


def read_events(log_dir, run="keras_logits"):
    """The LogitsLogger run `run` under `log_dir`, read by TensorBoard's own reader."""
    accumulator = event_accumulator.EventAccumulator(str(log_dir / run), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


class _EpochsRun(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


@pytest.fixture(scope="module")
def logged_run(digits, tmp_path_factory):
    """Three epochs of the un-exposed digits CNN with a 64-sample probe."""
    (x_train, y_train), (x_test, y_test) = digits
    root = tmp_path_factory.mktemp("logged")
    model = compiled_cnn()
    probe = (x_test[:64], y_test[:64])
    logger = LogitsLogger(probe, log_dir=root / "tb", csv_path=root / "log.csv")
    history = model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0, callbacks=[logger])
    return model, probe, root, history


def test_event_files_hold_scalars_and_histograms_one_step_per_epoch(logged_run):
    _, _, root, _ = logged_run
    events = read_events(root / "tb")
    scalars, histograms = set(events.Tags()["scalars"]), set(events.Tags()["histograms"])
    assert {"loss", "probe_logits_mean", "probe_logits_std", "probe_logits_margin", "probe_logits_ece",
            "probe_logits_brier", "probe_logits_confidence", "probe_logits_entropy", "probe_logits_accuracy"} <= scalars
    assert histograms == {"probe_logits", "probe_probabilities"}
    for tag in scalars | histograms:
        reader = events.Scalars if tag in scalars else events.Histograms
        assert [event.step for event in reader(tag)] == [0, 1, 2], tag


def test_last_epoch_values_match_the_probe_computed_independently(logged_run):
    model, (x_probe, y_probe), root, history = logged_run
    probabilities = model.predict(x_probe, verbose=0)  # The trained original, no keras_logits involved.
    reference = build_digits_cnn()
    reference.layers[-1].activation = keras.activations.linear
    reference.set_weights(model.get_weights())
    logits = reference.predict(x_probe, verbose=0)
    expected = {
        "probe_logits_mean": logits.mean(),
        "probe_logits_ece": numpy_ece(probabilities.max(-1), (probabilities.argmax(-1) == y_probe).astype(float)),
        "probe_logits_accuracy": np.mean(probabilities.argmax(-1) == y_probe),
        "probe_logits_confidence": probabilities.max(-1).mean(),
    }
    events = read_events(root / "tb")
    rows = read_csv(root / "log.csv")
    for tag, value in expected.items():
        assert events.Scalars(tag)[-1].value == pytest.approx(value, abs=1e-4), tag
        assert float(rows[-1][tag]) == pytest.approx(value, abs=1e-4), tag
        assert history.history[tag][-1] == pytest.approx(value, abs=1e-4), tag
    histogram = events.Histograms("probe_logits")[-1].histogram_value
    assert histogram.num == logits.size
    assert histogram.min == pytest.approx(logits.min(), abs=1e-4)
    assert histogram.max == pytest.approx(logits.max(), abs=1e-4)
    snapshot = np.load(root / "tb" / "keras_logits" / "snapshots" / "epoch_0002.npz")
    np.testing.assert_allclose(snapshot["logits"], logits, atol=1e-4)
    assert "probabilities" not in snapshot  # derived: softmax of the stored logits
    np.testing.assert_allclose(softmax(snapshot["logits"].astype("float64")), probabilities, atol=1e-6)
    np.testing.assert_array_equal(snapshot["labels"], y_probe)


def test_csv_has_one_header_and_one_row_per_epoch_equal_to_history(logged_run):
    _, _, root, history = logged_run
    lines = (root / "log.csv").read_text().splitlines()
    assert sum(line.startswith("epoch,") for line in lines) == 1
    rows = read_csv(root / "log.csv")
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    for key in ("loss", "probe_logits_ece"):
        assert [float(row[key]) for row in rows] == pytest.approx(history.history[key], rel=1e-6)
    assert sorted(p.name for p in (root / "tb" / "keras_logits" / "snapshots").iterdir()) == [
        "epoch_0000.npz", "epoch_0001.npz", "epoch_0002.npz"]


def test_in_step_metrics_are_logged_under_output_tags(digits, tmp_path):
    (x_train, y_train), (x_test, y_test) = digits
    exposed = compiled_cnn(exposed_metrics=True)
    logger = LogitsLogger((x_test[:32], y_test[:32]), log_dir=tmp_path, snapshots=False)
    history = exposed.fit(x_train[:256], y_train[:256], validation_data=(x_test, y_test), epochs=2,
                          verbose=0, callbacks=[logger])
    events = read_events(tmp_path)
    scalars = set(events.Tags()["scalars"])
    assert {"logits_ece", "logits_mean", "val_logits_ece", "val_loss"} <= scalars
    assert events.Scalars("logits_ece")[-1].value == pytest.approx(history.history["logits_ece"][-1], rel=1e-6)
    assert not (tmp_path / "keras_logits" / "snapshots").exists()


def test_probe_may_be_a_dataset_without_labels(digits, tmp_path):
    tf = pytest.importorskip("tensorflow", reason="tf.data probes need TensorFlow installed")

    (x_train, y_train), (x_test, _) = digits
    probe = tf.data.Dataset.from_tensor_slices(x_test[:50]).batch(16)
    logger = LogitsLogger(probe, csv_path=tmp_path / "log.csv")
    compiled_cnn().fit(x_train[:128], y_train[:128], epochs=1, verbose=0, callbacks=[logger])
    row = read_csv(tmp_path / "log.csv")[0]
    assert "probe_logits_mean" in row and "probe_logits_ece" not in row and "probe_logits_accuracy" not in row
    assert np.load(tmp_path / "log_snapshots" / "epoch_0000.npz")["logits"].shape == (50, 10)


def test_every_n_epochs_probes_the_first_and_every_nth_epoch_and_writes_every_epoch(digits, tmp_path):
    (x_train, y_train), (x_test, y_test) = digits
    logger = LogitsLogger((x_test[:16], y_test[:16]), csv_path=tmp_path / "log.csv", every_n_epochs=2)
    history = compiled_cnn().fit(x_train[:128], y_train[:128], epochs=5, verbose=0, callbacks=[logger])
    rows = read_csv(tmp_path / "log.csv")
    assert [row["epoch"] for row in rows] == ["0", "1", "2", "3", "4"]
    assert [row["probe_logits_ece"] != "" for row in rows] == [True, True, False, True, False]
    assert np.isnan(history.history["probe_logits_ece"]).tolist() == [False, False, True, False, True]


def test_resumed_fit_with_initial_epoch_appends_to_the_same_csv(digits, tmp_path):
    (x_train, y_train), (x_test, y_test) = digits
    model = compiled_cnn()
    probe = (x_test[:16], y_test[:16])
    model.fit(x_train[:128], y_train[:128], epochs=2, verbose=0,
              callbacks=[LogitsLogger(probe, log_dir=tmp_path, csv_path=tmp_path / "log.csv")])
    model.fit(x_train[:128], y_train[:128], initial_epoch=2, epochs=4, verbose=0,
              callbacks=[LogitsLogger(probe, log_dir=tmp_path, csv_path=tmp_path / "log.csv")])
    assert [row["epoch"] for row in read_csv(tmp_path / "log.csv")] == ["0", "1", "2", "3"]
    assert [e.step for e in read_events(tmp_path).Scalars("probe_logits_mean")] == [0, 1, 2, 3]


class _Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("simulated crash")


def test_interrupted_then_resumed_fit_leaves_one_continuous_csv_and_no_partial_files(digits, tmp_path):
    (x_train, y_train), (x_test, y_test) = digits
    probe = (x_test[:16], y_test[:16])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = compiled_cnn()
    with pytest.raises(RuntimeError, match="simulated crash"):
        model.fit(x_train[:128], y_train[:128], epochs=5, verbose=0,
                  callbacks=[backup, LogitsLogger(probe, csv_path=tmp_path / "log.csv"), _Crash()])
    epochs_run = _EpochsRun()
    model = compiled_cnn()
    model.fit(x_train[:128], y_train[:128], epochs=5, verbose=0,
              callbacks=[backup, LogitsLogger(probe, csv_path=tmp_path / "log.csv"), epochs_run])
    assert epochs_run.epochs[0] == 3  # Resumed after the last backed-up epoch, not restarted.
    assert [row["epoch"] for row in read_csv(tmp_path / "log.csv")] == ["0", "1", "2", "3", "4"]
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


class _TraceCounter(keras.layers.Layer):
    """Counts Python executions of call(): once per trace in graph mode."""

    traces = 0

    def call(self, x):
        type(self).traces += 1
        return x


class _RecordTraces(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.counts = []

    def on_epoch_end(self, epoch, logs=None):
        self.counts.append(_TraceCounter.traces)


@pytest.mark.backends("tensorflow", "jax")  # torch runs eagerly: every call "traces"
def test_probe_prediction_does_not_retrace_after_the_first_epoch(digits, tmp_path):
    (x_train, y_train), (x_test, y_test) = digits
    model = keras.Sequential([keras.Input((8, 8, 1)), _TraceCounter(), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    record = _RecordTraces()
    logger = LogitsLogger((x_test[:300], y_test[:300]), log_dir=tmp_path, batch_size=128)
    model.fit(x_train[:256], y_train[:256], batch_size=64, epochs=4, verbose=0, callbacks=[logger, record])
    assert record.counts[0] > 0
    assert record.counts == [record.counts[0]] * 4


def test_stop_on_nonfinite_stops_with_a_message_naming_epoch_and_count(digits, tmp_path):
    (x_train, y_train), (x_test, y_test) = digits
    probe = x_test[:8].copy()
    probe[0, 0, 0, 0] = np.nan  # NaN input -> 10 NaN logits for that sample through the Dense.
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    logger = LogitsLogger((probe, y_test[:8]), log_dir=tmp_path, stop_on_nonfinite=True)
    with pytest.warns(RuntimeWarning, match="stopped training after epoch 0: 10 non-finite logits on the probe"):
        history = model.fit(x_train[:128], y_train[:128], epochs=5, verbose=0, callbacks=[logger])
    assert len(history.history["loss"]) == 1
    assert "epoch 0" in logger.stop_reason


@pytest.mark.parametrize("probe,message", [
    ((np.zeros((4, 8, 8, 3)), np.zeros(4)), r"shape \(4, 8, 8, 3\), but model .* expects \(batch, 8, 8, 1\)"),
    ((np.zeros((4, 8, 8, 1)), np.zeros(3)), "has 4 inputs but 3 labels"),
    ((np.zeros((0, 8, 8, 1)), np.zeros(0)), "probe is empty"),
])
def test_bad_probe_fails_at_train_begin_before_any_epoch(digits, tmp_path, probe, message):
    (x_train, y_train), _ = digits
    epochs_run = _EpochsRun()
    with pytest.raises(ValueError, match=message):
        compiled_cnn().fit(x_train[:64], y_train[:64], epochs=2, verbose=0,
                           callbacks=[LogitsLogger(probe, log_dir=tmp_path), epochs_run])
    assert epochs_run.epochs == []


def test_unwritable_log_dir_fails_at_train_begin(digits, tmp_path):
    (x_train, y_train), (x_test, y_test) = digits
    blocker = tmp_path / "file"
    blocker.write_text("")
    epochs_run = _EpochsRun()
    with pytest.raises(PermissionError, match="LogitsLogger cannot write to"):
        compiled_cnn().fit(x_train[:64], y_train[:64], epochs=2, verbose=0,
                           callbacks=[LogitsLogger((x_test[:4], y_test[:4]), log_dir=blocker / "logs"), epochs_run])
    assert epochs_run.epochs == []


def test_probe_values_are_named_like_keras_history_keys():
    from keras_logits.callbacks import probe_key

    assert probe_key("ece") == "probe_logits_ece"
    assert probe_key("accuracy") == "probe_logits_accuracy"


@pytest.mark.parametrize("activation,labels_kind", [("softmax", "sparse"), ("softmax", "one_hot"),
                                                     ("sigmoid", "multi"), ("sigmoid", "binary")])
def test_probe_summary_equals_the_in_step_metrics(activation, labels_kind):
    """The epoch-end NumPy summary (statistics.summarize) and the compiled metrics must mean the same thing."""
    from keras_logits.statistics import summarize

    rng = np.random.default_rng(4)
    units = {"sparse": 6, "one_hot": 6, "multi": 4, "binary": 1}[labels_kind]
    logits = (rng.normal(size=(50, units)) * 3).astype("float32")
    if labels_kind == "sparse":
        labels = rng.integers(0, units, 50)
    elif labels_kind == "one_hot":
        labels = np.eye(units, dtype="float32")[rng.integers(0, units, 50)]
    else:
        labels = rng.integers(0, 2, (50, units)).astype("float32")
    summary = summarize(logits, labels, activation=activation)
    for metric in keras_logits.metrics.default_metrics(activation):
        metric.update_state(labels, logits)
        assert summary[metric.name] == pytest.approx(float(metric.result()), abs=2e-5), metric.name


def test_temporaries_of_a_killed_writer_are_removed_at_train_begin(tmp_path):
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, live_pid = int(finished.stdout), os.getpid()
    stale = tmp_path / f".log.csv.{dead_pid}-abc123.tmp"
    in_flight = tmp_path / f".log.csv.{live_pid}-def456.tmp"
    stale.write_text("half a row")
    in_flight.write_text("being written")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    model.fit(np.ones((4, 3)), np.zeros(4), verbose=0,
              callbacks=[LogitsLogger(np.ones((4, 3)), csv_path=tmp_path / "log.csv", snapshots=False)])
    assert not stale.exists() and in_flight.exists()
    assert (tmp_path / "log.csv").is_file()


@pytest.fixture(scope="module")
def two_input_two_head_model():
    """Inputs 'image' and 'meta' (model.inputs in that order); outputs 'digit' (softmax) and 'odd' (sigmoid)."""
    keras.utils.set_random_seed(3)
    image, meta = keras.Input((8, 8, 1), name="image"), keras.Input((2,), name="meta")
    features = keras.layers.Concatenate()([keras.layers.Flatten()(image), meta])
    digit = keras.layers.Dense(10, activation="softmax", name="digit")(features)
    odd = keras.layers.Dense(1, activation="sigmoid", name="odd")(features)
    model = keras.Model([image, meta], {"digit": digit, "odd": odd})
    model.compile(optimizer="adam", loss={"digit": "sparse_categorical_crossentropy", "odd": "binary_crossentropy"})
    return model


def test_dict_probe_in_another_key_order_is_paired_by_input_name_and_head_picks_the_output(
        digits, tmp_path, two_input_two_head_model):
    (x_train, y_train), (x_test, y_test) = digits
    model = two_input_two_head_model
    meta = np.random.default_rng(0).normal(size=(len(x_test), 2)).astype("float32")
    probe = ({"meta": meta[:32], "image": x_test[:32]}, y_test[:32])  # keys in the other order
    logger = LogitsLogger(probe, csv_path=tmp_path / "log.csv", head="digit")
    train_meta = np.zeros((128, 2), "float32")
    history = model.fit({"image": x_train[:128], "meta": train_meta},
                        {"digit": y_train[:128], "odd": (y_train[:128] % 2).astype("float32")},
                        epochs=1, verbose=0, callbacks=[logger])
    probabilities = model.predict({"image": x_test[:32], "meta": meta[:32]}, verbose=0)["digit"]
    expected = np.mean(probabilities.argmax(-1) == y_test[:32])
    assert history.history["probe_logits_accuracy"][-1] == pytest.approx(expected)
    snapshot = np.load(tmp_path / "log_snapshots" / "epoch_0000.npz")
    np.testing.assert_allclose(softmax(snapshot["logits"].astype("float64")), probabilities, atol=1e-5)


def test_multi_head_model_without_head_is_refused_naming_head(digits, tmp_path, two_input_two_head_model):
    (x_train, y_train), (x_test, y_test) = digits
    probe = {"image": x_test[:4], "meta": np.zeros((4, 2), "float32")}
    with pytest.raises(ValueError, match="head="):
        two_input_two_head_model.fit({"image": x_train[:8], "meta": np.zeros((8, 2))},
                                     {"digit": y_train[:8], "odd": np.zeros(8)}, epochs=1, verbose=0,
                                     callbacks=[LogitsLogger(probe, snapshots=False)])


def test_dict_probe_with_a_wrong_key_names_the_model_inputs(digits, two_input_two_head_model):
    (x_train, y_train), _ = digits
    probe = {"img": np.zeros((4, 8, 8, 1)), "meta": np.zeros((4, 2))}
    with pytest.raises(ValueError, match=r"keys \['img', 'meta'\], but model .* takes inputs \['image', 'meta'\]"):
        two_input_two_head_model.fit({"image": x_train[:8], "meta": np.zeros((8, 2))},
                                     {"digit": y_train[:8], "odd": np.zeros(8)}, epochs=1, verbose=0,
                                     callbacks=[LogitsLogger(probe, snapshots=False, head="digit")])


@pytest.fixture(scope="module")
def unnamed_two_input_model():
    """Two unnamed inputs: InputLayers 'input_layer...', tensors 'keras_tensor...', names that differ."""
    keras.utils.set_random_seed(5)
    a, b = keras.Input((4,)), keras.Input((4,))
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model([a, b], dense(keras.layers.Concatenate()([a, b])))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model, dense


@pytest.mark.parametrize("keyed_by", ["input_layer_names", "tensor_names"])
def test_dict_probe_of_unnamed_inputs_is_paired_by_layer_or_tensor_name_on_every_backend(
        unnamed_two_input_model, keyed_by):
    model, dense = unnamed_two_input_model
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 4)).astype("float32")
    y = rng.integers(0, 3, 16)
    inputs = model.inputs
    keys = ([t._keras_history[0].name for t in inputs] if keyed_by == "input_layer_names"
            else [t.name for t in inputs])
    probe = ({keys[1]: xb, keys[0]: xa}, y)  # the other order: paired by name, not position
    history = model.fit([xa, xb], y, epochs=1, verbose=0, callbacks=[LogitsLogger(probe, snapshots=False)])
    kernel, bias = (np.asarray(w, "float64") for w in dense.get_weights())
    logits = np.concatenate([xa, xb], axis=1).astype("float64") @ kernel + bias  # NumPy twin, trained weights
    assert history.history["probe_logits_mean"][-1] == pytest.approx(logits.mean(), abs=1e-5)
    assert history.history["probe_logits_accuracy"][-1] == pytest.approx(np.mean(logits.argmax(-1) == y))


def test_dict_probe_with_unknown_keys_advises_the_input_layer_names(unnamed_two_input_model):
    model, _ = unnamed_two_input_model
    names = [t._keras_history[0].name for t in model.inputs]
    x = np.zeros((4, 4), "float32")
    with pytest.raises(ValueError, match=rf"takes inputs \['{names[0]}', '{names[1]}'\]"):
        model.fit([x, x], np.zeros(4), epochs=1, verbose=0,
                  callbacks=[LogitsLogger(({"a": x, "b": x}, np.zeros(4)), snapshots=False)])


def _small_softmax_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def test_second_fit_from_epoch_zero_keeps_the_first_runs_csv_rows_under_its_tensorboard_run_name(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 4)).astype("float32"), rng.integers(0, 3, 32)
    model = _small_softmax_model()
    histories = [model.fit(x, y, epochs=2, verbose=0, callbacks=[
        LogitsLogger((x, y), log_dir=tmp_path, csv_path=tmp_path / "m.csv")]).history for _ in range(2)]
    resumed = model.fit(x, y, initial_epoch=1, epochs=3, verbose=0, callbacks=[
        LogitsLogger((x, y), log_dir=tmp_path, csv_path=tmp_path / "m.csv")]).history
    rows = read_csv(tmp_path / "m.csv")
    assert [(row["run"], row["epoch"]) for row in rows] == [
        ("keras_logits", "0"), ("keras_logits", "1"),
        ("keras_logits_2", "0"), ("keras_logits_2", "1"), ("keras_logits_2", "2")]
    expected = histories[0]["loss"] + histories[1]["loss"][:1] + resumed["loss"]  # epoch 1 redone by the resume
    assert [float(row["loss"]) for row in rows] == pytest.approx(expected, rel=1e-6)
    for run, steps in (("keras_logits", {0, 1}), ("keras_logits_2", {0, 1, 2})):
        assert {e.step for e in read_events(tmp_path, run).Scalars("probe_logits_mean")} == steps


def test_second_fit_without_log_dir_names_a_new_run_and_keeps_the_first_runs_snapshots(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.random((16, 4)).astype("float32"), rng.integers(0, 3, 16)
    logits = []
    for seed in (0, 1):
        model = _small_softmax_model(seed)
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LogitsLogger((x, y), csv_path=tmp_path / "m.csv")])
        kernel, bias = (np.asarray(w, "float64") for w in model.layers[-1].get_weights())
        logits.append(x.astype("float64") @ kernel + bias)  # NumPy twin of the trained head
    assert [row["run"] for row in read_csv(tmp_path / "m.csv")] == ["keras_logits", "keras_logits_2"]
    for directory, reference in zip(("m_snapshots", "m_snapshots_2"), logits):
        np.testing.assert_allclose(np.load(tmp_path / directory / "epoch_0000.npz")["logits"], reference, atol=1e-5)


def test_csv_written_before_the_run_column_is_continued_as_the_first_run(tmp_path):
    (tmp_path / "m.csv").write_text("epoch,loss\n0,1.5\n1,1.25\n")
    x, y = np.ones((8, 4), "float32"), np.zeros(8, int)
    _small_softmax_model().fit(x, y, epochs=1, verbose=0,
                               callbacks=[LogitsLogger((x, y), csv_path=tmp_path / "m.csv", snapshots=False)])
    rows = read_csv(tmp_path / "m.csv")
    assert [(row["run"], row["epoch"], row["loss"][:4]) for row in rows][:2] == [
        ("keras_logits", "0", "1.5"), ("keras_logits", "1", "1.25")]
    assert (rows[2]["run"], rows[2]["epoch"]) == ("keras_logits_2", "0")

"""LogitsLogger beside Keras' own callbacks and trackers: names, order, every_n_epochs, runs, MLflow."""

import csv
import warnings

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from keras_logits.callbacks import LogitsLogger

EPOCHS = 5


def read_events(run_dir):
    accumulator = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def small_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)
    return x, y


def keras_callbacks(tmp_path):
    """Monitoring callbacks on probe values with mode='auto', set to act at the first chance they get."""
    return {
        # min_delta larger than any change: no improvement after the first value, so it stops at epoch 1.
        "early_stopping": keras.callbacks.EarlyStopping(monitor="probe_logits_ece", patience=1, min_delta=10.0),
        "checkpoint": keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="probe_logits_accuracy",
                                                      save_best_only=True),
        "reduce_lr": keras.callbacks.ReduceLROnPlateau(monitor="probe_logits_brier", patience=0, min_delta=10.0,
                                                       factor=0.5, min_lr=1e-6),
        "csv_logger": keras.callbacks.CSVLogger(str(tmp_path / "keras.csv")),
        "tensorboard": keras.callbacks.TensorBoard(str(tmp_path / "tb"), histogram_freq=0, write_graph=False),
    }


@pytest.mark.parametrize("every_n_epochs", [1, 2])
@pytest.mark.parametrize("order", ["keras_callbacks_first", "logger_first"])
def test_probe_values_reach_keras_callbacks_in_either_order(data, tmp_path, order, every_n_epochs):
    x, y = data
    model = small_model()
    others = keras_callbacks(tmp_path)
    logger = LogitsLogger((x[:32], y[:32]), log_dir=tmp_path / "tb", every_n_epochs=every_n_epochs)
    callbacks = [*others.values(), logger] if order == "keras_callbacks_first" else [logger, *others.values()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=callbacks)
    messages = [str(w.message) for w in caught]
    # Probes at epochs 0 and 1 (the first, then every n-th); EarlyStopping stops after epoch 1 either way.
    assert len(history.history["loss"]) == 2
    assert not [m for m in messages if "not available" in m or "Keras isn't able" in m], messages
    assert others["early_stopping"].stopped_epoch == 1
    assert (tmp_path / "best.keras").is_file()
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.025)
    with open(tmp_path / "keras.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [float(row["probe_logits_ece"]) for row in rows] == pytest.approx(history.history["probe_logits_ece"])
    # Keras' TensorBoard writes the epoch logs (train/, validation/); the logger's run only adds the probe.
    ours = read_events(tmp_path / "tb" / "keras_logits")
    assert "loss" not in ours.Tags()["scalars"] and "probe_logits_ece" in ours.Tags()["scalars"]
    assert [e.value for e in ours.Scalars("probe_logits_ece")] == pytest.approx(history.history["probe_logits_ece"])
    assert (tmp_path / "tb" / "train").is_dir()


def test_every_second_epoch_keeps_probe_columns_in_keras_csv_logger_from_the_first_epoch(data, tmp_path):
    x, y = data
    logger = LogitsLogger((x[:32], y[:32]), every_n_epochs=2, snapshots=False)
    csv_logger = keras.callbacks.CSVLogger(str(tmp_path / "keras.csv"))
    history = small_model().fit(x, y, epochs=EPOCHS, verbose=0, callbacks=[csv_logger, logger])
    with open(tmp_path / "keras.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["probe_logits_ece"] for row in rows][2::2] == ["nan", "nan"]  # no probe at epochs 2 and 4
    values = [float(row["probe_logits_ece"]) for row in rows]
    assert values == pytest.approx(history.history["probe_logits_ece"], nan_ok=True)
    assert np.isfinite(values).tolist() == [True, True, False, True, False]


def test_a_probe_value_without_a_direction_is_still_refused_by_mode_auto(data):
    x, y = data
    stopping = keras.callbacks.EarlyStopping(monitor="probe_logits_confidence")
    with pytest.raises(ValueError, match="automatically determine"):
        small_model().fit(x, y, epochs=1, verbose=0, callbacks=[stopping, LogitsLogger((x, y), snapshots=False)])


def test_a_second_fit_into_the_same_log_dir_is_a_new_run_and_a_resumed_fit_continues_it(data, tmp_path):
    x, y = data
    model = small_model()
    for initial_epoch, epochs in ((0, 2), (0, 2), (2, 3)):
        model.fit(x, y, initial_epoch=initial_epoch, epochs=epochs, verbose=0,
                  callbacks=[LogitsLogger((x[:16], y[:16]), log_dir=tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keras_logits", "keras_logits_2"]
    first, second = read_events(tmp_path / "keras_logits"), read_events(tmp_path / "keras_logits_2")
    assert [e.step for e in first.Scalars("probe_logits_ece")] == [0, 1]
    assert [e.step for e in second.Scalars("probe_logits_ece")] == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "keras_logits_2" / "snapshots").iterdir()) == [
        "epoch_0000.npz", "epoch_0001.npz", "epoch_0002.npz"]


def test_runs_sharing_a_csv_folder_keep_their_own_snapshots(data, tmp_path):
    x, y = data
    for name, seed in (("a", 0), ("b", 1)):
        small_model(seed).fit(x, y, epochs=1, verbose=0,
                              callbacks=[LogitsLogger((x[:16], y[:16]), csv_path=tmp_path / f"{name}.csv")])
    a, b = (np.load(tmp_path / f"{name}_snapshots" / "epoch_0000.npz")["logits"] for name in "ab")
    assert not np.allclose(a, b)


@pytest.mark.parametrize("wiring", ["callback_listed_first", "autolog"])
def test_mlflow_receives_the_probe_scalars_and_the_files_as_artifacts(data, tmp_path, monkeypatch, wiring):
    mlflow = pytest.importorskip("mlflow", reason="MLflow is an optional test dependency")
    import mlflow.keras

    x, y = data
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local file store: no server, no database
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    logger = LogitsLogger((x[:32], y[:32]), log_dir=tmp_path / "logs")
    callbacks = [mlflow.keras.MlflowCallback(), logger] if wiring == "callback_listed_first" else [logger]
    if wiring == "autolog":
        mlflow.keras.autolog(log_models=False, log_datasets=False, silent=True)
    try:
        with mlflow.start_run() as run:
            history = small_model().fit(x, y, epochs=3, verbose=0, callbacks=callbacks)
            mlflow.log_artifacts(str(logger.run_dir), artifact_path="keras_logits")
    finally:
        mlflow.keras.autolog(disable=True)
    mlflow.flush_async_logging()
    client = mlflow.MlflowClient()
    logged = client.get_metric_history(run.info.run_id, "probe_logits_ece")
    assert [m.value for m in sorted(logged, key=lambda m: m.step)] == pytest.approx(history.history["probe_logits_ece"])
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "keras_logits/snapshots")]
    assert artifacts == [f"keras_logits/snapshots/epoch_{e:04d}.npz" for e in range(3)]

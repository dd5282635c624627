"""mode="auto" monitoring of in-step metric names on exposed models, and how LogitsLogger finds Keras' callback list.

Real Keras callbacks (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau) in both orders, with the list Keras
builds and with a CallbackList passed by the user; the reference is what each callback did (stopped epoch, file
written, learning rate) and the direction it chose.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits._callback_list import ProbeFirst
from keras_logits.callbacks import LogitsLogger

EPOCHS = 4


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)


def exposed_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    exposed = keras_logits.expose(model)
    exposed.compile(optimizer=keras.optimizers.SGD(0.05),
                    loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                    metrics={"logits": keras_logits.metrics.default_metrics("softmax")})
    return exposed


def monitoring_callbacks(tmp_path):
    """Each set to act at its first chance: min_delta larger than any change means no improvement after epoch 0."""
    return [
        keras.callbacks.EarlyStopping(monitor="val_logits_ece", patience=1, min_delta=10.0),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_logits_brier",
                                        save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(monitor="logits_ece", patience=0, min_delta=10.0, factor=0.5,
                                          min_lr=1e-6),
    ]


def check_they_acted(callbacks, history, model, tmp_path):
    early_stopping, checkpoint, reduce_lr = callbacks
    assert all(c.monitor_op is keras.ops.less for c in callbacks)  # ECE and Brier: lower is better
    assert early_stopping.stopped_epoch == 1 and len(history["loss"]) == 2
    assert (tmp_path / "best.keras").exists()
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.025)


@pytest.mark.parametrize("order", ["monitors_first", "logger_first"])
def test_mode_auto_finds_the_direction_of_in_step_metrics_of_one_output_in_either_order(data, tmp_path, order):
    x, y = data
    model = exposed_model()
    monitors = monitoring_callbacks(tmp_path)
    logger = LogitsLogger((x[:16], y[:16]), snapshots=False, histograms=False)
    callbacks = [*monitors, logger] if order == "monitors_first" else [logger, *monitors]
    history = model.fit(x, y, validation_data=(x, y), epochs=EPOCHS, verbose=0, callbacks=callbacks).history
    check_they_acted(monitors, history, model, tmp_path)


def test_without_the_logger_keras_refuses_mode_auto_and_the_documented_mode_min_works(data, tmp_path):
    x, y = data
    with pytest.raises(ValueError, match="automatically determine"):
        exposed_model().fit(x, y, validation_data=(x, y), epochs=1, verbose=0,
                            callbacks=[keras.callbacks.EarlyStopping(monitor="val_logits_ece")])
    early_stopping = keras.callbacks.EarlyStopping(monitor="val_logits_ece", mode="min", patience=1, min_delta=10.0)
    history = exposed_model().fit(x, y, validation_data=(x, y), epochs=EPOCHS, verbose=0,
                                  callbacks=[early_stopping]).history
    assert early_stopping.stopped_epoch == 1 and len(history["loss"]) == 2


@pytest.mark.parametrize("order", ["monitor_first", "logger_first"])
def test_a_callback_list_passed_by_the_user_gets_the_probe_values_and_is_left_as_it_was(data, tmp_path, order):
    x, y = data
    model = exposed_model()
    early_stopping = keras.callbacks.EarlyStopping(monitor="probe_logits_ece", patience=1, min_delta=10.0)
    logger = LogitsLogger((x[:16], y[:16]), snapshots=False, histograms=False)
    history = keras.callbacks.History()
    given = [early_stopping, logger, history] if order == "monitor_first" else [logger, early_stopping, history]
    callback_list = keras.callbacks.CallbackList(given, model=model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback warning, no "metric not available"
        model.fit(x, y, epochs=EPOCHS, verbose=0, callbacks=callback_list)
    assert early_stopping.stopped_epoch == 1 and len(history.history["probe_logits_ece"]) == 2
    assert callback_list.callbacks == given and not any(isinstance(c, ProbeFirst) for c in callback_list.callbacks)


def test_a_logger_driven_by_hand_warns_once_and_still_logs_at_its_own_epoch_end(data):
    x, y = data
    model = exposed_model()
    logger = LogitsLogger((x[:16], y[:16]), snapshots=False, histograms=False)
    logger.set_model(model)
    with pytest.warns(RuntimeWarning, match="not started by a Keras CallbackList") as caught:
        logger.on_train_begin()
    assert len([w for w in caught if "CallbackList" in str(w.message)]) == 1
    logs = {}
    logger.on_epoch_end(0, logs)
    expected = np.mean(model.predict(x[:16], verbose=0)["logits"])
    assert logs["probe_logits_mean"] == pytest.approx(float(expected), abs=1e-6)
    logger.on_train_end()


def test_keras_alone_finds_the_direction_on_a_single_output_logits_model(data):
    x, y = data
    keras.utils.set_random_seed(0)
    original = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
    model = keras_logits.logits_model(original)
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=keras_logits.metrics.default_metrics("softmax"))
    early_stopping = keras.callbacks.EarlyStopping(monitor="val_ece", patience=1, min_delta=10.0)
    history = model.fit(x, y, validation_data=(x, y), epochs=EPOCHS, verbose=0, callbacks=[early_stopping]).history
    assert early_stopping.monitor_op is keras.ops.less
    assert early_stopping.stopped_epoch == 1 and len(history["loss"]) == 2

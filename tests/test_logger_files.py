"""LogitsLogger's files written off the training thread: nothing queued is lost when fit ends, raises or exits."""

import csv
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

import keras_logits
from keras_logits._writer_thread import WriterThread
from keras_logits.callbacks import LogitsLogger
from keras_logits.checks import ModelCheckWarning

STEPS_PER_EPOCH = 4


@keras.saving.register_keras_serializable(package="tests")
class RaiseInStep(keras.layers.Layer):
    """Identity that raises `error` in the training step number `at_step` (counted in Python: run eagerly)."""

    def __init__(self, at_step, error=RuntimeError, **kwargs):
        super().__init__(**kwargs)
        self.at_step, self.error, self.steps = at_step, error, 0

    def call(self, x, training=False):
        if training:
            self.steps += 1
            if self.steps == self.at_step:
                raise self.error(f"step {self.steps} failed")
        return x


def raising_classifier(at_step, error):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), RaiseInStep(at_step, error), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32 * STEPS_PER_EPOCH, 5)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("step_in_epoch", [1, STEPS_PER_EPOCH])
def test_a_step_that_raises_after_two_epochs_leaves_two_epochs_of_csv_events_and_snapshots(
        data, tmp_path, error, step_in_epoch):
    x, y = data
    finished_epochs = 2
    model = raising_classifier(finished_epochs * STEPS_PER_EPOCH + step_in_epoch, error)
    logger = LogitsLogger((x[:16], y[:16]), log_dir=tmp_path, csv_path=tmp_path / "log.csv")
    with pytest.raises(error, match="failed"):
        model.fit(x, y, batch_size=32, epochs=5, verbose=0, callbacks=[logger])
    # Read at once, in this process: the writes were finished before the error left fit.
    with open(tmp_path / "log.csv", newline="") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["0", "1"]
    assert sorted(p.name for p in (tmp_path / "keras_logits" / "snapshots").iterdir()) == [
        "epoch_0000.npz", "epoch_0001.npz"]
    events = event_accumulator.EventAccumulator(str(tmp_path / "keras_logits"), size_guidance={"scalars": 0})
    events.Reload()
    assert [event.step for event in events.Scalars("probe_logits_ece")] == [0, 1]
    assert model.train_function.__name__ != "guarded"  # the model is left as it was
    # The next fit logs a new run (a fresh model: on JAX, Keras leaves a model whose step raised with deleted
    # buffers).
    raising_classifier(-1, error).fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[logger])
    assert logger.run == "keras_logits_2"


def test_snapshot_written_on_the_writer_thread_equals_the_models_logits(data, tmp_path):
    x, y = data
    model = raising_classifier(-1, RuntimeError)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0,
              callbacks=[LogitsLogger((x[:16], y[:16]), csv_path=tmp_path / "log.csv")])
    twin = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    twin.set_weights(model.get_weights())
    with np.load(tmp_path / "log_snapshots" / "epoch_0001.npz") as snapshot:
        np.testing.assert_allclose(snapshot["logits"], twin.predict(x[:16], verbose=0), rtol=1e-5, atol=1e-5)


def mismatched_classifier():
    """Softmax output with a from_logits loss: check_model's double-activation finding."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("check", [True, False])
def test_check_false_turns_off_the_model_check_warnings_at_train_begin(data, tmp_path, check):
    x, y = data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mismatched_classifier().fit(x, y, epochs=1, verbose=0,
                                    callbacks=[LogitsLogger((x[:8], y[:8]), csv_path=tmp_path / "log.csv",
                                                            check=check)])
    findings = [w for w in caught if issubclass(w.category, ModelCheckWarning)]
    assert ("double-activation" in str(findings[0].message)) if check else findings == []


def test_log_dir_without_tensorboard_is_refused_at_construction_and_csv_works(data, tmp_path, monkeypatch):
    x, y = data
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # what `import tensorboard` finds when absent
    with pytest.raises(ImportError, match=r"needs the tensorboard package: pip install tensorboard"):
        LogitsLogger((x[:8], y[:8]), log_dir=tmp_path)
    model = raising_classifier(-1, RuntimeError)
    history = model.fit(x, y, epochs=2, verbose=0,
                        callbacks=[LogitsLogger((x[:8], y[:8]), csv_path=tmp_path / "log.csv")])
    with open(tmp_path / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [float(row["probe_logits_ece"]) for row in rows] == pytest.approx(history.history["probe_logits_ece"])


def test_writer_thread_runs_writes_in_order_and_reraises_a_failed_write_in_the_caller():
    done = []
    writer = WriterThread()
    writer.submit(lambda: done.append(1))
    writer.submit(lambda: 1 / 0)
    writer.submit(lambda: done.append(3))  # after a failure: dropped, it would be out of order
    with pytest.raises(ZeroDivisionError):
        writer.wait()
    writer.close()
    assert done == [1]


def test_writes_still_queued_when_the_interpreter_exits_are_written(tmp_path):
    target = tmp_path / "late.txt"
    script = ("import time, sys\nfrom keras_logits._writer_thread import WriterThread\n"
              "writer = WriterThread()\n"
              f"writer.submit(lambda: (time.sleep(0.5), open({str(target)!r}, 'w').write('written')))\n"
              "sys.exit(0)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert target.read_text() == "written"


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_logging_to_tensorboard_on_jax_or_torch_imports_neither_tensorflow_nor_its_start_up(backend, tmp_path):
    pytest.importorskip(backend, reason=f"the {backend} backend is not installed")
    script = (
        "import sys, keras, numpy as np, keras_logits.callbacks\n"
        "imported = ('tensorflow' in sys.modules, 'tensorboard' in sys.modules)\n"
        "model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation='softmax')])\n"
        "model.compile(optimizer='sgd', loss='sparse_categorical_crossentropy')\n"
        "x, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])\n"
        f"logger = keras_logits.callbacks.LogitsLogger((x, y), log_dir={str(tmp_path)!r})\n"
        "model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])\n"
        "print(*imported, 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "KERAS_BACKEND": backend})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False False False"
    assert list((tmp_path / "keras_logits").glob("events.out.tfevents.*"))


def test_a_probe_of_fractional_ids_for_an_integer_input_is_refused_at_train_begin(tmp_path):
    """The probe gets the CLI's input check (`_probe.check_input`): ids are never rounded through floats."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,), dtype="int32", name="ids"), keras.layers.Embedding(10, 3),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ids = np.arange(32).reshape(8, 4) % 10
    logger = LogitsLogger((ids + 0.5, np.zeros(8)), csv_path=tmp_path / "log.csv")
    with pytest.raises(ValueError, match=r"takes integer \(int32\) inputs, but LogitsLogger probe input 'ids' holds "
                                         r"fractional"):
        model.fit(ids, np.zeros(8), epochs=1, verbose=0, callbacks=[logger])
    assert not (tmp_path / "log.csv").exists()


def test_a_second_fit_reuses_the_probe_set_up_unless_the_probe_changed(tmp_path):
    """The compiled probe is kept across fits of the same model, but a new probe is read, not the old one."""
    from keras_logits.statistics import summarize

    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    logger = keras_logits.LogitsLogger((x[:16], y[:16]), csv_path=tmp_path / "log.csv", snapshots=False)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    forward = logger._forward
    model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    assert logger._forward is forward
    logger.probe = (x[16:40], y[16:40])
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[logger]).history
    assert logger._forward is not forward
    twin = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    twin.set_weights(model.get_weights())
    expected = summarize(twin.predict(x[16:40], verbose=0), y[16:40], activation="softmax")
    assert history["probe_logits_accuracy"][0] == pytest.approx(expected["accuracy"], abs=1e-6)

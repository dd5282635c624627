"""Distillation: logits_model, KLDistillation against NumPy on no-activation twins, a Distiller run, the checks."""

import numpy as np
import pytest
import keras

import keras_logits
from keras_logits.distillation import KLDistillation, distillation_loss, logits_model
from tests.conftest import logit_tolerance

TEMPERATURE = 3.0


def _numpy_softmax_kl(teacher_logits, student_logits, temperature):
    """T^2 * mean over samples of sum_c p (log p - log q), tempered softmax, float64."""
    def log_softmax(z):
        z = np.asarray(z, np.float64) / temperature
        z = z - z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))

    log_p, log_q = log_softmax(teacher_logits), log_softmax(student_logits)
    return temperature**2 * np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1))


def _numpy_bernoulli_kl(teacher_logits, student_logits, temperature):
    """T^2 * mean over samples and labels of KL(Bernoulli(p) || Bernoulli(q)), float64."""
    p = 1 / (1 + np.exp(-np.asarray(teacher_logits, np.float64) / temperature))
    q = 1 / (1 + np.exp(-np.asarray(student_logits, np.float64) / temperature))
    return temperature**2 * np.mean(p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)))


def _mlp(units, activation, *, separate=False, hidden=16, seed=0, name=None):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(hidden, activation="relu")]
    if separate:
        layers += [keras.layers.Dense(units, name="scores"), keras.layers.Activation(activation, name="probs")]
    else:
        layers.append(keras.layers.Dense(units, activation=activation, name="head"))
    return keras.Sequential(layers, name=name)


def _no_activation_twin(model):
    """The same architecture and weights with the final activation removed: the reference logits."""
    twin = keras.Sequential([keras.Input((8, 8, 1))] + [
        keras.layers.Dense(**{**layer.get_config(), "activation": None}) if layer is model.layers[-1]
        and isinstance(layer, keras.layers.Dense) else type(layer).from_config(layer.get_config())
        for layer in model.layers if not isinstance(layer, keras.layers.Activation)
    ])
    twin.set_weights(model.get_weights())
    return twin


@pytest.fixture(scope="module")
def batch(digits):
    (x_train, _), _ = digits
    return x_train[:64]


@pytest.mark.parametrize("separate", [False, True], ids=["fused-softmax-teacher", "separate-activation-teacher"])
def test_distiller_loss_equals_numpy_kl_of_no_activation_twins(batch, separate):
    teacher = _mlp(10, "softmax", separate=separate, hidden=32, seed=1)
    student = _mlp(10, "softmax", seed=2)
    reference = _numpy_softmax_kl(_no_activation_twin(teacher).predict(batch, verbose=0),
                                  _no_activation_twin(student).predict(batch, verbose=0), TEMPERATURE)
    distiller = keras.distillation.Distiller(
        teacher=logits_model(teacher), student=logits_model(student),
        distillation_losses=KLDistillation(TEMPERATURE), student_loss_weight=0.0,
    )
    distiller.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = distiller.compute_loss(x=batch, y=None, y_pred=distiller(batch), training=False)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss)), reference, rtol=1e-5, atol=1e-7)


def test_sigmoid_multilabel_loss_equals_numpy_bernoulli_kl(batch):
    teacher, student = _mlp(4, "sigmoid", hidden=32, seed=3), _mlp(4, "sigmoid", seed=4)
    reference = _numpy_bernoulli_kl(_no_activation_twin(teacher).predict(batch, verbose=0),
                                    _no_activation_twin(student).predict(batch, verbose=0), TEMPERATURE)
    loss = KLDistillation(TEMPERATURE, activation="sigmoid").compute_loss(
        logits_model(teacher)(batch), logits_model(student)(batch))
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss)), reference, rtol=1e-5, atol=1e-7)


def test_loss_matches_the_textbook_value_where_keras_default_does_not():
    teacher, student = np.array([[2.0, 0.5, -1.0]]), np.array([[0.1, 0.2, 0.3]])
    ours = float(distillation_loss(teacher, student, temperature=2.0))
    np.testing.assert_allclose(ours, _numpy_softmax_kl(teacher, student, 2.0), rtol=1e-6)
    explicit_keras = keras.distillation.LogitsDistillation(2.0, loss=keras.losses.KLDivergence())
    np.testing.assert_allclose(float(explicit_keras.compute_loss(teacher, student)), ours, rtol=1e-5)
    default_keras = float(keras.distillation.LogitsDistillation(2.0).compute_loss(teacher, student))
    assert abs(default_keras - ours) > 2.0  # 3.22 vs 0.75: why KLDistillation exists


def test_loss_is_finite_for_saturated_logits():
    teacher = np.array([[400.0, -400.0, 0.0]], "float32")
    student = np.array([[-400.0, 400.0, 0.0]], "float32")
    for activation in ("softmax", "sigmoid"):
        value = float(distillation_loss(teacher, student, temperature=1.0, activation=activation))
        assert np.isfinite(value) and value > 100


def test_logits_model_shares_weights_and_outputs_the_twin_logits(batch):
    model = _mlp(10, "softmax", seed=5)
    logits = logits_model(model)
    assert [id(v) for v in logits.weights] == [id(v) for v in model.weights]
    reference = _no_activation_twin(model).predict(batch, verbose=0)
    np.testing.assert_allclose(logits.predict(batch, verbose=0), reference, rtol=0, atol=logit_tolerance(reference))


def test_logits_model_round_trips_in_safe_mode(batch, tmp_path):
    logits = logits_model(_mlp(10, "softmax", separate=True, seed=6))
    logits.save(tmp_path / "logits.keras")
    loaded = keras.saving.load_model(tmp_path / "logits.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), logits.predict(batch, verbose=0), rtol=0, atol=1e-6)


def test_logits_model_of_a_multi_head_model_needs_head(batch):
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, {"digit": keras.layers.Dense(10, activation="softmax", name="digit")(features),
                                 "odd": keras.layers.Dense(1, activation="sigmoid", name="odd")(features)})
    with pytest.raises(ValueError, match=r"2 classification outputs \['digit', 'odd'\].*head="):
        logits_model(model)
    digit = logits_model(model, head="digit")
    probabilities = model.predict(batch, verbose=0)["digit"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(digit.predict(batch, verbose=0))),
                               probabilities, rtol=0, atol=1e-6)


def test_kl_distillation_config_round_trips_and_refuses_bad_values():
    loss = KLDistillation.from_config(KLDistillation(4.0, activation="sigmoid").get_config())
    assert (loss.temperature, loss.activation) == (4.0, "sigmoid")
    with pytest.raises(ValueError, match="positive"):
        KLDistillation(0.0)
    with pytest.raises(ValueError, match="'softmax' or 'sigmoid'"):
        KLDistillation(3.0, activation="relu")


def test_three_epoch_distiller_run_trains_the_original_student(digits, trained_digits_cnn):
    (x_train, y_train), (x_test, y_test) = digits
    student = _mlp(10, "softmax", hidden=16, seed=7, name="student")
    before_weights = [np.array(w) for w in student.get_weights()]
    before = np.mean(np.argmax(student.predict(x_test, verbose=0), axis=-1) == y_test)
    distiller = keras.distillation.Distiller(
        teacher=logits_model(trained_digits_cnn), student=logits_model(student),
        distillation_losses=KLDistillation(TEMPERATURE), student_loss_weight=0.5,
    )
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert keras_logits.check_model(distiller) == []
    distiller.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    after_weights = student.get_weights()
    assert all(not np.allclose(a, b) for a, b in zip(before_weights, after_weights))
    probabilities = student.predict(x_test, verbose=0)  # the original student, with its own softmax
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)
    after = np.mean(np.argmax(probabilities, axis=-1) == y_test)
    assert after > max(before + 0.3, 0.7), (before, after)


@pytest.fixture(scope="module")
def teacher_and_student():
    return _mlp(10, "softmax", hidden=32, seed=8), _mlp(10, "softmax", seed=9)


def test_check_model_flags_probability_models_in_a_distiller(teacher_and_student):
    teacher, student = teacher_and_student
    distiller = keras.distillation.Distiller(
        teacher, student, keras.distillation.LogitsDistillation(TEMPERATURE, loss=keras.losses.KLDivergence()))
    findings = keras_logits.check_model(distiller)
    assert [(f.code, f.severity) for f in findings] == [("distillation-probabilities", "error")] * 2
    assert "logits_model(teacher)" in findings[0].fix and "logits_model(student)" in findings[1].fix


def test_check_model_flags_the_default_string_loss(teacher_and_student):
    teacher, student = teacher_and_student
    distiller = keras.distillation.Distiller(
        logits_model(teacher), logits_model(student), keras.distillation.LogitsDistillation(TEMPERATURE))
    (finding,) = keras_logits.check_model(distiller)
    assert finding.code == "distillation-loss" and "kl_divergence" in finding.message
    assert "KLDistillation(temperature=3.0)" in finding.fix


def test_check_model_flags_a_probability_loss_on_the_logits_student(teacher_and_student):
    teacher, student = teacher_and_student
    distiller = keras.distillation.Distiller(logits_model(teacher), logits_model(student), KLDistillation())
    distiller.compile(loss="sparse_categorical_crossentropy")
    (finding,) = keras_logits.check_model(distiller)
    assert finding.code == "logits-as-probabilities" and finding.message.startswith("Student: ")

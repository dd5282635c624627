"""check_model: every finding triggered by a real compiled model, none on correct ones."""

import warnings

import keras
import numpy as np
import pytest

import keras_logits
from keras_logits.callbacks import LogitsLogger
from keras_logits.checks import ModelCheckWarning, check_model

CCE, SCCE, BCE = (keras.losses.CategoricalCrossentropy, keras.losses.SparseCategoricalCrossentropy,
                  keras.losses.BinaryCrossentropy)


def classifier(units=3, activation="softmax", separate=False):
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    if separate:
        outputs = keras.layers.Activation(activation)(keras.layers.Dense(units)(hidden))
    else:
        outputs = keras.layers.Dense(units, activation=activation)(hidden)
    return keras.Model(inputs, outputs)


def codes(model, loss=None, **kwargs):
    if loss is not None:
        model.compile(optimizer="adam", loss=loss)
    return [finding.code for finding in check_model(model, **kwargs)]


@pytest.mark.parametrize(
    "activation, units, separate, loss, expected",
    [
        ("softmax", 3, False, SCCE(from_logits=True), ["double-activation"]),
        ("softmax", 3, True, CCE(from_logits=True), ["double-activation"]),
        ("sigmoid", 4, False, BCE(from_logits=True), ["double-activation"]),
        ("linear", 3, False, SCCE(from_logits=False), ["logits-as-probabilities"]),
        ("linear", 3, False, "sparse_categorical_crossentropy", ["logits-as-probabilities"]),
        ("linear", 1, False, keras.losses.binary_crossentropy, ["logits-as-probabilities"]),
        ("softmax", 4, False, "binary_crossentropy", ["softmax-multilabel"]),
        ("sigmoid", 4, False, CCE(), ["sigmoid-categorical"]),
        ("sigmoid", 1, False, "sparse_categorical_crossentropy", ["sigmoid-categorical"]),
        ("softmax", 1, False, CCE(), ["single-unit-softmax"]),
        ("softmax", 1, False, BCE(from_logits=True),
         ["single-unit-softmax", "double-activation", "softmax-multilabel"]),
    ],
)
def test_each_mismatch_is_found_on_a_compiled_model(activation, units, separate, loss, expected):
    assert codes(classifier(units, activation, separate), loss) == expected


@pytest.mark.parametrize(
    "activation, units, loss",
    [
        ("softmax", 3, SCCE()),
        ("softmax", 3, "categorical_crossentropy"),
        ("sigmoid", 4, BCE()),
        ("sigmoid", 1, "binary_crossentropy"),
        ("linear", 3, SCCE(from_logits=True)),
        ("linear", 1, BCE(from_logits=True)),
        ("softmax", 3, "mse"),  # not a cross-entropy: nothing to say about from_logits
    ],
)
def test_correct_models_have_no_findings(activation, units, loss):
    assert codes(classifier(units, activation), loss) == []


def test_multi_hot_labels_make_softmax_an_error():
    model = classifier(4, "softmax")
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    labels = np.array([[1, 0, 1, 0], [0, 1, 0, 0]])
    (finding,) = check_model(model, labels=labels)
    assert (finding.code, finding.severity) == ("softmax-multilabel", "error")
    assert "sigmoid" in finding.fix
    assert check_model(model, labels=np.eye(4)) == []


def test_exposed_models_are_checked_per_output():
    exposed = keras_logits.expose(classifier(3, "softmax"))
    assert codes(exposed, {"logits": SCCE(from_logits=True)}) == []
    wrong = check_model(exposed, {"logits": SCCE(), "probabilities": SCCE(from_logits=True)})
    assert [(f.code, f.output) for f in wrong] == [("logits-as-probabilities", "logits"),
                                                   ("double-activation", "probabilities")]


def test_loss_argument_overrides_and_uncompiled_models_only_get_structural_checks():
    model = classifier(3, "softmax")
    assert check_model(model) == []
    assert [f.code for f in check_model(model, [SCCE(from_logits=True)])] == ["double-activation"]
    model.compile(optimizer="adam", loss=SCCE())
    assert [f.code for f in check_model(model, SCCE(from_logits=True))] == ["double-activation"]
    assert codes(classifier(1, "softmax")) == ["single-unit-softmax"]


def test_findings_say_what_and_how_to_fix():
    (finding,) = check_model(classifier(3, "softmax"), SCCE(from_logits=True))
    text = str(finding)
    assert "from_logits=True" in text and "Fix:" in text and finding.output in text


def test_logits_logger_warns_at_train_begin(tmp_path):
    model = classifier(3, "softmax")
    model.compile(optimizer="adam", loss=SCCE(from_logits=True))
    x, y = np.random.default_rng(0).normal(size=(16, 5)), np.arange(16) % 3
    logger = LogitsLogger((x, y), csv_path=tmp_path / "log.csv", snapshots=False)
    with pytest.warns(ModelCheckWarning, match="double-activation"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    correct = keras_logits.expose(classifier(3, "softmax"))
    correct.compile(optimizer="adam", loss={"logits": SCCE(from_logits=True)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelCheckWarning)
        correct.fit(x, y, epochs=1, verbose=0, callbacks=[LogitsLogger((x, y), snapshots=False)])

"""The prediction tables of `keras-logits predict` and the demo, read back and checked against NumPy."""

import numpy as np
import pytest

from keras_logits.cli._tables import position_table, prediction_table


@pytest.fixture(scope="module")
def softmax_outputs():
    logits = np.random.default_rng(0).normal(size=(4, 5)) * 3
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return logits, exp / exp.sum(-1, keepdims=True)


def test_prediction_table_lists_the_top_k_classes_with_their_logit_probability_log_and_margin(softmax_outputs):
    logits, probabilities = softmax_outputs
    names = ["ant", "bee", "cat", "dog", "eel"]
    lines = prediction_table(logits, probabilities, top_k=2, class_names=names).splitlines()
    assert lines[0].split() == ["sample", "rank", "class", "logit", "probability", "log(p)", "margin"]
    rows = [line.split() for line in lines[1:]]
    assert len(rows) == 4 * 2
    order = np.argsort(-probabilities, axis=-1)
    for (sample, rank, name, logit, probability, log_probability, margin) in rows:
        i, r = int(sample), int(rank) - 1
        j = order[i, r]
        assert name == names[j]
        assert float(logit) == pytest.approx(logits[i, j], abs=5e-5)
        assert float(probability) == pytest.approx(probabilities[i, j], abs=5e-7)
        assert float(log_probability) == pytest.approx(np.log(probabilities[i, j]), abs=5e-5)
        assert float(margin) == pytest.approx(logits[i, j] - np.delete(logits[i], j).max(), abs=5e-5)
        assert (float(margin) > 0) == (r == 0)  # only the predicted class beats every other logit


def test_prediction_table_with_labels_adds_the_true_class_and_the_demo_prints_it(softmax_outputs):
    from keras_logits.cli.demo import format_table

    logits, probabilities = softmax_outputs
    labels = np.array([4, 0, 2, 2])
    table = prediction_table(logits[:3], probabilities[:3], labels=labels[:3])
    rows = [line.split() for line in table.splitlines()[1:]]
    assert [(row[0], row[1], row[2], row[3]) for row in rows] == [
        (str(i), str(labels[i]), "1", str(probabilities[i].argmax())) for i in range(3)]
    assert format_table({"logits": logits, "probabilities": probabilities}, labels, rows=3) == table


def test_prediction_table_of_a_one_class_sigmoid_head_has_no_margin():
    logits = np.array([[2.0], [-1.0]])
    rows = [line.split() for line in prediction_table(logits, 1 / (1 + np.exp(-logits))).splitlines()[1:]]
    assert [row[-1] for row in rows] == ["-", "-"]
    assert float(rows[1][4]) == pytest.approx(1 / (1 + np.exp(1.0)), abs=5e-7)


def test_position_table_counts_each_samples_softmax_ids_and_sigmoid_labels_that_are_on():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 4, size=(3, 6, 5))
    rows = [line.split() for line in position_table(ids, num_classes=4, activation="softmax", top_k=1)
            .splitlines()[1:]]
    for i, row in enumerate(rows):
        counts = np.bincount(ids[i].ravel(), minlength=4)
        assert row[:4] == [str(i), "30", str(counts.argmax()), f"({counts.max()},"]
    on = rng.integers(0, 2, size=(2, 7, 3))  # a multi-label tagger: 7 positions, 3 labels
    rows = [line.split() for line in position_table(on, num_classes=3, activation="sigmoid", top_k=1)
            .splitlines()[1:]]
    for i, row in enumerate(rows):
        counts = on[i].sum(0)
        assert row[:4] == [str(i), "7", str(counts.argmax()), f"({counts.max()},"]

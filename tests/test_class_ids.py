"""class_ids / top_k / positions: the host-side class ids, checked against plain NumPy."""

import numpy as np
import pytest

from keras_logits._class_ids import RULES, SIGMOID_THRESHOLD, class_ids, positions, top_k, undecided


@pytest.fixture(scope="module")
def segmentation_probabilities():
    logits = np.random.default_rng(0).normal(size=(3, 5, 4, 6))
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def test_softmax_class_ids_are_the_argmax_over_the_class_axis_at_every_position(segmentation_probabilities):
    ids = class_ids(segmentation_probabilities, "softmax")
    assert ids.shape == (3, 5, 4) and ids.dtype == np.int64
    for b in range(3):
        for h in range(5):
            for w in range(4):
                assert ids[b, h, w] == int(np.argmax(segmentation_probabilities[b, h, w]))


def test_class_axis_other_than_last_is_honoured(segmentation_probabilities):
    channels_first = np.moveaxis(segmentation_probabilities, -1, 1)
    np.testing.assert_array_equal(class_ids(channels_first, "softmax", axis=1),
                                  segmentation_probabilities.argmax(-1))


def test_sigmoid_class_ids_are_a_zero_one_decision_per_class():
    p = np.array([[0.5, 0.49999, 0.9, 0.0]])
    np.testing.assert_array_equal(class_ids(p, "sigmoid"), [[1, 0, 1, 0]])


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation must be one of"):
        class_ids(np.ones((1, 2)), "relu")


def test_top_k_per_position_matches_a_sorted_reference(segmentation_probabilities):
    ids, values = top_k(segmentation_probabilities, 3)
    assert ids.shape == values.shape == (3, 5, 4, 3)
    reference = np.argsort(-segmentation_probabilities, axis=-1)[..., :3]
    np.testing.assert_array_equal(ids, reference)
    np.testing.assert_array_equal(values, np.take_along_axis(segmentation_probabilities, reference, -1))
    assert top_k(segmentation_probabilities, 50)[0].shape[-1] == 6  # Capped at the class count.


def test_top_k_ties_keep_the_lower_class_first_and_k_below_one_is_refused():
    ids, _ = top_k(np.array([[0.25, 0.25, 0.25, 0.25]]), 2)
    np.testing.assert_array_equal(ids, [[0, 1]])
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_k(np.ones((1, 2)), 0)


def test_positions_are_all_axes_but_batch_and_class():
    assert positions((None, 64, 32, 21)) == (64, 32)
    assert positions((None, 21, 64, 32), axis=1) == (64, 32)
    assert positions((None, 10)) == ()


def test_undecided_marks_softmax_near_ties_per_position_and_sigmoid_probabilities_near_the_threshold(
        segmentation_probabilities):
    p = segmentation_probabilities
    top_two = np.sort(p, axis=-1)[..., -2:]
    expected = (top_two[..., 1] - top_two[..., 0]) <= 0.05
    np.testing.assert_array_equal(undecided(p, "softmax", tolerance=0.05), expected)
    assert 0 < expected.sum() < expected.size  # both kinds of positions are in the fixture
    np.testing.assert_array_equal(undecided(np.moveaxis(p, -1, 1), "softmax", axis=1, tolerance=0.05), expected)
    np.testing.assert_array_equal(undecided(p, "sigmoid", tolerance=0.05), np.abs(p - 0.5) <= 0.05)


def test_the_rule_is_named_once_for_the_manifest_and_unknown_activations_are_refused():
    assert RULES == {"softmax": "argmax", "sigmoid": f"probabilities >= {SIGMOID_THRESHOLD}"}
    with pytest.raises(ValueError, match="activation must be one of \\('softmax', 'sigmoid'\\), got 'relu'"):
        undecided(np.ones((1, 2)), "relu", tolerance=1e-5)

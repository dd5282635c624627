"""Per-sample scores against SciPy references, their OOD directions, and float64 precision."""

import numpy as np
import pytest
from scipy import special, stats

from keras_logits import scores


@pytest.fixture(scope="module")
def logits():
    return np.random.default_rng(0).normal(scale=3.0, size=(64, 7))


def test_softmax_scores_equal_scipy(logits):
    p = special.softmax(logits, axis=1)
    np.testing.assert_allclose(scores.max_probability(logits), p.max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(scores.max_logit(logits), logits.max(axis=1), rtol=0)
    ordered = np.sort(logits, axis=1)
    np.testing.assert_allclose(scores.margin(logits), ordered[:, -1] - ordered[:, -2], rtol=1e-12)
    np.testing.assert_allclose(scores.energy(logits), -special.logsumexp(logits, axis=1), rtol=1e-12)
    np.testing.assert_allclose(scores.energy(logits, temperature=2.0),
                               -2.0 * special.logsumexp(logits / 2.0, axis=1), rtol=1e-12)
    np.testing.assert_allclose(scores.entropy(logits), stats.entropy(p, axis=1), rtol=1e-10)


def test_sigmoid_scores_equal_scipy(logits):
    p = special.expit(logits)
    np.testing.assert_allclose(scores.max_probability(logits, "sigmoid"), np.maximum(p, 1 - p).max(axis=1))
    np.testing.assert_allclose(scores.energy(logits, activation="sigmoid"),
                               -np.sum(np.logaddexp(0, logits), axis=1), rtol=1e-12)
    binary_entropy = stats.entropy(np.stack([p, 1 - p]), axis=0).sum(axis=1)
    np.testing.assert_allclose(scores.entropy(logits, "sigmoid"), binary_entropy, rtol=1e-9)
    one_logit = logits[:, 0]
    np.testing.assert_allclose(scores.margin(one_logit, "sigmoid"), np.abs(one_logit))


def test_scores_stay_exact_where_float32_probabilities_saturate():
    logits = np.array([[20.0, 0.0, 0.0], [30.0, 0.0, 0.0]], dtype="float32")
    assert np.all(special.softmax(logits, axis=1).astype("float32").max(axis=1) == 1.0)
    assert np.all(scores.max_probability(logits) < 1.0)
    far = np.array([[50.0, 0.0, 0.0], [80.0, 0.0, 0.0]])
    entropy, energy = scores.entropy(far), scores.energy(far)
    assert np.all(entropy > 0) and entropy[0] > entropy[1] and energy[0] > energy[1]


def test_every_score_orders_in_and_out_of_distribution_as_documented():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 500)
    in_distribution = 6.0 * np.eye(10)[labels] + rng.normal(size=(500, 10))
    out_of_distribution = rng.normal(size=(500, 10))
    for name, values in scores.ood_scores(in_distribution).items():
        other = scores.ood_scores(out_of_distribution)[name]
        in_mean, out_mean = values.mean(), other.mean()
        assert (out_mean > in_mean) == scores.HIGHER_MEANS_OOD[name], name


def test_backend_tensors_are_accepted(logits):
    import keras

    tensor = keras.ops.convert_to_tensor(logits.astype("float32"))
    np.testing.assert_allclose(scores.energy(tensor), scores.energy(logits.astype("float32")))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: scores.entropy(np.zeros(4)), r"\(num_samples, num_classes\)"),
        (lambda: scores.energy(np.zeros((2, 3)), temperature=0), "temperature must be > 0"),
        (lambda: scores.margin(np.zeros((2, 0))), "zero classes"),
        (lambda: scores.entropy(np.zeros((2, 3)), "relu"), "not supported"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_empty_input_gives_empty_scores():
    assert all(v.shape == (0,) for v in scores.ood_scores(np.zeros((0, 3))).values())


def test_per_position_scores_are_the_row_scores_of_every_pixel(logits):
    pixels = logits.reshape(2, 4, 8, 7)                   # 2 images of 4x8 pixels, 7 classes
    for activation in ("softmax", "sigmoid"):
        per_pixel = scores.ood_scores(pixels, activation, temperature=1.5)
        rows = scores.ood_scores(logits, activation, temperature=1.5)
        for name, values in per_pixel.items():
            assert values.shape == (2, 4, 8), name
            np.testing.assert_allclose(values.reshape(-1), rows[name], rtol=1e-12, err_msg=name)
    p = special.softmax(pixels, axis=-1)                  # over the classes only, not pixels x classes
    np.testing.assert_allclose(scores.probabilities(pixels), p, rtol=1e-12)
    np.testing.assert_allclose(scores.max_probability(pixels), p.max(axis=-1), rtol=1e-12)
    np.testing.assert_allclose(scores.entropy(pixels), stats.entropy(p, axis=-1), rtol=1e-10)

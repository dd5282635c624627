"""Plots render headless to non-empty PNGs of the requested size."""

import matplotlib
import numpy as np
import pytest
from PIL import Image

from keras_logits import plots
from keras_logits.calibration import reliability_report

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def logits_and_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    return 3.0 * (np.eye(4)[labels] + rng.normal(size=(300, 4))), labels


def png_size(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.format, image.size


def test_reliability_diagram_png(tmp_path, logits_and_labels):
    logits, labels = logits_and_labels
    path = tmp_path / "reliability.png"
    figure = plots.reliability_diagram(logits, labels, from_logits=True, path=path, figsize=(5, 6), dpi=80)
    assert png_size(path) == ("PNG", (400, 480))
    assert figure.axes[0].get_title().startswith("ECE")
    from_report = plots.reliability_diagram(reliability_report(logits, labels, from_logits=True), title="held out")
    assert from_report.axes[0].get_title() == "held out"
    assert len(from_report.axes[1].patches) == 15  # one count bar per bin, empty ones included


def test_class_histograms_png(tmp_path, logits_and_labels):
    logits, _ = logits_and_labels
    path = tmp_path / "classes.png"
    figure = plots.class_histograms(logits, classes=[0, 2], class_names=list("abcd"), path=path,
                                    figsize_per_class=(6, 2), dpi=50)
    assert png_size(path) == ("PNG", (300, 200))
    assert [axes.get_ylabel() for axes in figure.axes[::2]] == ["a", "c"]


def test_logits_over_epochs_from_a_real_logits_logger_run(tmp_path):
    import keras

    import keras_logits

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(1).normal(size=(64, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    logger = keras_logits.LogitsLogger((x, y), log_dir=tmp_path / "logs")
    model.fit(x, y, epochs=3, verbose=0, callbacks=[logger])
    path = tmp_path / "epochs.png"
    figure = plots.logits_over_epochs(tmp_path / "logs" / "keras_logits" / "snapshots", path=path, figsize=(4, 3), dpi=100)
    assert png_size(path) == ("PNG", (400, 300))
    image = figure.axes[0].get_images()[0].get_array()
    assert image.shape == (40, 3)  # bins x epochs
    np.testing.assert_allclose(np.asarray(image).sum(axis=0), 1.0)


def test_plot_errors(tmp_path, logits_and_labels):
    logits, _ = logits_and_labels
    with pytest.raises(ValueError, match="needs labels"):
        plots.reliability_diagram(logits)
    with pytest.raises(ValueError, match="No LogitsLogger snapshots"):
        plots.logits_over_epochs(tmp_path)
    with pytest.raises(ValueError, match=r"indices in \[0, 4\)"):
        plots.class_histograms(logits, classes=[4])


def bar_heights(axes):
    return np.array([patch.get_height() for patch in axes.patches])


def test_per_pixel_reliability_diagram_shows_the_report_of_the_labelled_pixels(tmp_path, logits_and_labels):
    logits, labels = logits_and_labels
    pixels, ids = logits.reshape(3, 10, 10, 4), labels.reshape(3, 10, 10).copy()
    ids[1] = 255
    figure = plots.reliability_diagram(pixels, ids, ignore_class=255, from_logits=True, path=tmp_path / "r.png")
    keep = ids.reshape(-1) != 255
    report = reliability_report(logits[keep], labels[keep], from_logits=True)
    assert f"{report.ece:.4f}" in figure.axes[0].get_title()
    np.testing.assert_array_equal(bar_heights(figure.axes[1]), report.bin_count)
    assert png_size(tmp_path / "r.png")[0] == "PNG"


def test_class_histograms_of_masked_tokens_count_only_the_unpadded_ones(logits_and_labels):
    logits, _ = logits_and_labels
    tokens = logits.reshape(6, 50, 4)
    mask = np.arange(50)[None, :] < np.array([50, 3, 20, 1, 7, 40])[:, None]
    figure = plots.class_histograms(tokens, mask=mask, classes=[2], bins=12)
    counts = bar_heights(figure.axes[0])
    expected, _ = np.histogram(tokens[mask][:, 2], bins=12)
    np.testing.assert_array_equal(counts, expected)


def test_class_histograms_of_a_large_probe_draw_a_bounded_seeded_sample():
    pixels = np.random.default_rng(1).normal(size=(4, 128, 128, 21)).astype("float32")  # 1.4 million logits
    first = plots.class_histograms(pixels, classes=[0], bins=20, max_values=210_000)
    again = plots.class_histograms(pixels, classes=[0], bins=20, max_values=210_000)
    counts = bar_heights(first.axes[0])
    assert counts.sum() == 10_000                          # 210_000 logits / 21 classes positions
    np.testing.assert_array_equal(counts, bar_heights(again.axes[0]))
    with pytest.raises(ValueError, match="max_values must be a positive integer"):
        plots.class_histograms(pixels, max_values=0)


def test_reliability_diagram_reads_the_values_as_from_logits_says(logits_and_labels):
    """Probability-looking logits drawn as logits when told so; the deprecated guess warns."""
    _, labels = logits_and_labels
    looks_like_p = np.random.default_rng(1).dirichlet(np.ones(4), size=len(labels))
    figure = plots.reliability_diagram(looks_like_p, labels, from_logits=True)
    as_logits = reliability_report(looks_like_p, labels, from_logits=True)
    assert figure.axes[0].get_title().startswith(f"ECE {as_logits.ece:.4f}")
    with pytest.warns(DeprecationWarning, match="Pass from_logits=True for logits") as record:
        guessed = plots.reliability_diagram(looks_like_p, labels)
    assert guessed.axes[0].get_title() != figure.axes[0].get_title()
    assert record[0].filename == __file__  # the caller's line, so Python shows it outside the package

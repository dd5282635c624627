"""predict_input.read_inputs: dtypes kept, strings, images of several sizes, clear refusals."""

import numpy as np
import pytest

from keras_logits.cli._inputs import read_inputs

BIG_IDS = np.array([[2 ** 24 + 1, 2 ** 30 + 3], [5, 2 ** 24 + 7]])  # float32 would round these


def test_integer_ids_above_two_to_the_24_are_kept_exactly_from_npy(tmp_path):
    np.save(tmp_path / "ids.npy", BIG_IDS)
    x = read_inputs(tmp_path / "ids.npy", (None, 2), dtype="int32")
    assert x.dtype == np.int32
    np.testing.assert_array_equal(x, BIG_IDS)
    assert not np.array_equal(BIG_IDS.astype("float32").astype("int64"), BIG_IDS)  # What a float cast would do.


def test_integer_ids_are_parsed_exactly_from_csv(tmp_path):
    (tmp_path / "ids.csv").write_text("a,b\n" + "\n".join(",".join(map(str, row)) for row in BIG_IDS) + "\n")
    np.testing.assert_array_equal(read_inputs(tmp_path / "ids.csv", (None, 2), dtype="int64"), BIG_IDS)


def test_fractional_or_out_of_range_values_for_an_integer_input_are_refused(tmp_path):
    np.save(tmp_path / "fractional.npy", np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match=r"takes integer \(int32\) inputs, but .* fractional"):
        read_inputs(tmp_path / "fractional.npy", (None, 2), dtype="int32")
    np.save(tmp_path / "big.npy", np.array([[2 ** 40, 1]]))
    with pytest.raises(ValueError, match="outside the model's int32 range"):
        read_inputs(tmp_path / "big.npy", (None, 2), dtype="int32")


def test_scale_applies_to_float_inputs_only(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[2, 4]]))
    np.testing.assert_array_equal(read_inputs(tmp_path / "x.npy", (None, 2), scale=0.5), [[1.0, 2.0]])
    np.testing.assert_array_equal(read_inputs(tmp_path / "x.npy", (None, 2), scale=0.5, dtype="int32"), [[2, 4]])


def test_strings_from_a_text_file_one_example_per_line(tmp_path):
    (tmp_path / "texts.txt").write_text("the cat sat\n\na dog ran\n")
    x = read_inputs(tmp_path / "texts.txt", (None, 1), dtype="string")
    assert x.shape == (2, 1) and x[1, 0] == "a dog ran"
    np.save(tmp_path / "texts.npy", np.array(["one", "two", "three"]))
    assert read_inputs(tmp_path / "texts.npy", (None,), dtype="string").tolist() == ["one", "two", "three"]


def test_numbers_for_a_string_input_and_strings_for_a_numeric_input_are_refused(tmp_path):
    np.save(tmp_path / "numbers.npy", np.zeros((2, 1)))
    with pytest.raises(ValueError, match="The model takes strings, but .* holds float64 values"):
        read_inputs(tmp_path / "numbers.npy", (None, 1), dtype="string")
    (tmp_path / "texts.txt").write_text("hello\n")
    with pytest.raises(ValueError, match="holds strings, but the model takes float32 inputs"):
        read_inputs(tmp_path / "texts.txt", (None, 1))


def _images(folder, sizes):
    from PIL import Image

    folder.mkdir()
    for i, (height, width) in enumerate(sizes):
        pixels = (np.random.default_rng(i).random((height, width, 3)) * 255).astype("uint8")
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


def test_images_of_different_sizes_for_a_model_of_any_size_need_image_size(tmp_path):
    folder = _images(tmp_path / "images", [(20, 30), (24, 24)])
    with pytest.raises(ValueError, match=r"2 different sizes \(20x30, 24x24\).*pass --image-size HEIGHT WIDTH"):
        read_inputs(folder, (None, None, None, 3))
    assert read_inputs(folder, (None, None, None, 3), image_size=(16, 12)).shape == (2, 16, 12, 3)


def test_images_are_resized_to_a_fixed_model_size_and_a_conflicting_image_size_is_refused(tmp_path):
    folder = _images(tmp_path / "images", [(20, 30), (24, 24)])
    assert read_inputs(folder, (None, 8, 8, 3)).shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match="--image-size 16 16 differs from the model's input size 8x8"):
        read_inputs(folder, (None, 8, 8, 3), image_size=(16, 16))


def test_npz_with_several_arrays_and_no_x_is_refused(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros((1, 2)), b=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="name the input array 'x'"):
        read_inputs(tmp_path / "two.npz", (None, 2))


def test_pickled_arrays_are_refused(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        read_inputs(tmp_path / "objects.npy", (None,))

"""saved_model_scan: SavedModels that touch files, run Python or print are refused before loading."""

import pytest

from keras_logits.serving._scan import UnsafeSavedModelError, check_saved_model, denied_ops
from tests.integration.test_reference_exports import REFERENCE

# Building SavedModels with tf.Module needs TensorFlow, which the JAX backend's export needs too.
pytestmark = pytest.mark.backends("tensorflow", "jax")


def saved_model(tmp_path, name, body):
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def serve(self, x):
            return {"logits": body(x), "probabilities": tf.nn.softmax(x)}

    module = Module()
    module.scale = tf.Variable(1.0)  # A variable, so the SavedModel has a saver with SaveV2/RestoreV2.
    path = tmp_path / name
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def test_a_serving_function_that_writes_a_file_is_found_and_refused(tmp_path):
    import tensorflow as tf

    marker = tmp_path / "written"

    def write(x):
        tf.io.write_file(str(marker), "ran")
        return x

    path = saved_model(tmp_path, "writer", write)
    assert not marker.exists()
    assert "WriteFile" in denied_ops(path)
    with pytest.raises(UnsafeSavedModelError, match=r"Refusing to load SavedModel .* WriteFile \(in .*Pass --unsafe"):
        check_saved_model(path)
    check_saved_model(path, unsafe=True)  # The explicit opt-in.
    assert not marker.exists()  # Scanning reads the protocol buffer; it runs nothing.


@pytest.mark.parametrize("op,body", [
    ("EagerPyFunc", lambda tf: lambda x: tf.py_function(lambda v: v, [x], tf.float32)),
    ("PrintV2", lambda tf: lambda x: (tf.print(x), x)[1]),
    ("ReadFile", lambda tf: lambda x: x + 0.0 * tf.cast(tf.strings.length(tf.io.read_file("/etc/hostname")), tf.float32)),
])
def test_python_print_and_read_ops_are_found(tmp_path, op, body):
    import tensorflow as tf

    assert op in denied_ops(saved_model(tmp_path, op, body(tf)))


def test_the_checkpoint_ops_of_the_saver_are_allowed_and_a_clean_model_passes(tmp_path):
    path = saved_model(tmp_path, "clean", lambda x: x * 2.0)
    assert denied_ops(path) == {}
    assert denied_ops(REFERENCE / "digits_cnn") == {}  # Its saver holds SaveV2 and RestoreV2.


def test_checkpoint_ops_in_a_signature_outside_the_saver_are_refused(tmp_path):
    import tensorflow as tf

    class Module(tf.Module):
        def __init__(self):
            self.v = tf.Variable(1.0)

        @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
        def save_to(self, prefix):
            saved = tf.raw_ops.SaveV2(prefix=prefix, tensor_names=["v"], shape_and_slices=[""],
                                      tensors=[self.v.read_value()])
            with tf.control_dependencies([saved]):
                return tf.identity(prefix)

    module = Module()
    path = tmp_path / "saver_call"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.save_to})
    found = denied_ops(path)
    assert "SaveV2" in found and all("traced_save" not in where for where in found["SaveV2"])


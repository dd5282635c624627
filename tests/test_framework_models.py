"""Classifiers written in PyTorch or Flax, wrapped in Keras, get both outputs from LogitsHead.

Each test runs on the backend its framework needs and checks against the
framework's own softmax computed outside Keras.
"""

import keras
import numpy as np
import pytest

import keras_logits

TOLERANCE = 1e-5


@pytest.mark.backends("torch")
def test_torch_module_in_torch_module_wrapper():
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))  # logits
    inputs = keras.Input((6,))
    logits = keras.layers.TorchModuleWrapper(module, name="torch_classifier", output_shape=(4,))(inputs)
    model = keras.Model(inputs, keras_logits.LogitsHead("softmax")(logits))

    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    outputs = model.predict(x, verbose=0)
    with torch.no_grad():
        reference_logits = module(torch.from_numpy(x).to(next(module.parameters()).device))
        reference_probabilities = torch.softmax(reference_logits, dim=1)
    np.testing.assert_allclose(outputs["logits"], reference_logits.cpu().numpy(), atol=TOLERANCE)
    np.testing.assert_allclose(outputs["probabilities"], reference_probabilities.cpu().numpy(), atol=TOLERANCE)

    # It trains through the logits output, with the metrics, and the torch module's weights move.
    before = [p.detach().cpu().numpy().copy() for p in module.parameters()]
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                  metrics={"logits": keras_logits.metrics.default_metrics("softmax")})
    history = model.fit(x, np.arange(32) % 4, epochs=2, verbose=0).history
    assert "logits_ece" in history and np.isfinite(history["loss"]).all()
    assert any(not np.allclose(b, p.detach().cpu().numpy()) for b, p in zip(before, module.parameters()))


@pytest.mark.backends("jax")
def test_flax_module_in_flax_layer():
    import jax
    from flax import linen

    class Classifier(linen.Module):
        @linen.compact
        def __call__(self, x):
            x = linen.relu(linen.Dense(16)(x))
            return linen.Dense(4)(x)  # logits

    layer = keras.layers.FlaxLayer(Classifier(), name="flax_classifier")
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras_logits.LogitsHead("softmax")(layer(inputs)))

    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    outputs = model.predict(x, verbose=0)
    params = jax.tree_util.tree_map(keras.ops.convert_to_numpy, layer.params)
    reference_logits = Classifier().apply(params, x)  # FlaxLayer.params is {"params": {...}}
    np.testing.assert_allclose(outputs["logits"], np.asarray(reference_logits), atol=TOLERANCE)
    np.testing.assert_allclose(outputs["probabilities"], np.asarray(jax.nn.softmax(reference_logits, axis=-1)),
                               atol=TOLERANCE)

    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                  metrics={"logits": keras_logits.metrics.default_metrics("softmax")})
    history = model.fit(x, np.arange(32) % 4, epochs=2, verbose=0).history
    assert "logits_ece" in history and np.isfinite(history["loss"]).all()
    trained = jax.tree_util.tree_map(keras.ops.convert_to_numpy, layer.params)
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(params),
                                                     jax.tree_util.tree_leaves(trained)))

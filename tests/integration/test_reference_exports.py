"""Compatibility: the committed reference export keeps working, and new exports keep its shape."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_logits
from tests.conftest import logit_tolerance

REFERENCE = Path(__file__).resolve().parents[2] / "saved_models"

CONSUMER = r"""
import json, sys
import numpy as np, tensorflow as tf
export_dir, inputs_path, result_path = sys.argv[1:]
serve = tf.saved_model.load(export_dir).signatures["serving_default"]
inputs = {name: tf.constant(value) for name, value in np.load(inputs_path).items()}
outputs = serve(**inputs)
np.savez(result_path, **{name: tensor.numpy() for name, tensor in outputs.items()})
print(json.dumps({
    "keras_logits_imported": any(m.split(".")[0] == "keras_logits" for m in sys.modules),
    "inputs": {name: [spec.dtype.name, spec.shape.as_list()] for name, spec in serve.structured_input_signature[1].items()},
    "outputs": {name: [spec.dtype.name, spec.shape.as_list()] for name, spec in serve.structured_outputs.items()},
}))
"""


def serve_in_fresh_process(export_dir, image, tmp_path):
    inputs_path, result_path = tmp_path / "inputs.npz", tmp_path / "result.npz"
    np.savez(inputs_path, image=image)
    completed = subprocess.run([sys.executable, "-c", CONSUMER, str(export_dir), str(inputs_path), str(result_path)],
                               capture_output=True, text=True, check=True, cwd=tmp_path,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    with np.load(result_path) as result:
        return {name: result[name] for name in result.files}, json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def recorded():
    with np.load(REFERENCE / "digits_cnn_samples.npz") as samples:
        return {name: samples[name] for name in samples.files}


def _assert_matches_recording(outputs, recorded):
    np.testing.assert_allclose(outputs["logits"], recorded["logits"], atol=logit_tolerance(recorded["logits"]))
    np.testing.assert_allclose(outputs["probabilities"], recorded["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(outputs["class_id"], recorded["class_id"])


def test_reference_is_small():
    size = sum(f.stat().st_size for f in (REFERENCE / "digits_cnn").rglob("*") if f.is_file())
    assert size < 2 * 1024 * 1024


def test_committed_reference_saved_model_reproduces_recorded_outputs(recorded, tmp_path):
    outputs, report = serve_in_fresh_process(REFERENCE / "digits_cnn", recorded["image"], tmp_path)
    assert not report["keras_logits_imported"]
    _assert_matches_recording(outputs, recorded)


@pytest.mark.backends("tensorflow", "jax")
def test_new_export_keeps_the_reference_signature_manifest_and_values(recorded, tmp_path):
    model = keras.saving.load_model(REFERENCE / "digits_cnn.keras", safe_mode=True)
    path = keras_logits.export(model, tmp_path / "new", class_names=[str(d) for d in range(10)])
    new_outputs, new_report = serve_in_fresh_process(path, recorded["image"], tmp_path)
    _, reference_report = serve_in_fresh_process(REFERENCE / "digits_cnn", recorded["image"], tmp_path)
    assert new_report["inputs"] == reference_report["inputs"]
    assert new_report["outputs"] == reference_report["outputs"]
    _assert_matches_recording(new_outputs, recorded)
    new_manifest = keras_logits.read_manifest(path)
    reference_manifest = keras_logits.read_manifest(REFERENCE / "digits_cnn")
    # Consumers of the reference's manifest keep working: keys may be added, never removed.
    assert set(new_manifest) >= set(reference_manifest)
    assert set(new_manifest["head"]) >= set(reference_manifest["head"])
    assert new_manifest["head"]["temperature"] is None
    for key in ("inputs", "outputs", "signature", "format"):
        assert new_manifest[key] == reference_manifest[key]

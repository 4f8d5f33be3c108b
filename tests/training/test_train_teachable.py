"""Teachable Machine's Keras export (keras_model.h5 + labels.txt) converts through the kit's own export to an
edgevision classifier. The test builds a tiny model of the same layout (a Sequential of a feature Sequential
and a softmax head Sequential, 224x224 input scaled to -1..1 outside the model, a DepthwiseConv2D whose config
carries tf.keras 2's 'groups': 1), saved as Teachable Machine saves it."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")
pytestmark = pytest.mark.train

import h5py
import keras
from edgevision.deploy.runner import Runner, RunnerOptions
from edgevision.training.teachable import read_labels
from test_cli import assert_one_line_error, edgevision

LABELS = ("Thumbs up", "Thumbs down", "Nothing")


def _layers(config):
    """Every layer config in a (nested) Sequential config."""
    for layer in config["config"].get("layers", []):
        yield layer
        if "layers" in layer.get("config", {}):
            yield from _layers(layer)


def teachable_folder(root, labels=LABELS):
    """root/keras_model.h5 + root/labels.txt in Teachable Machine's layout."""
    root.mkdir()
    keras.utils.set_random_seed(0)
    features = keras.Sequential([keras.Input((224, 224, 3)),
                                 keras.layers.Conv2D(8, 3, strides=8, activation="relu"),
                                 keras.layers.DepthwiseConv2D(3, padding="same"),
                                 keras.layers.GlobalAveragePooling2D()], name="sequential_1")
    head = keras.Sequential([keras.Input((8,)), keras.layers.Dense(len(labels), activation="softmax")],
                            name="sequential_3")
    model = keras.Sequential([keras.Input((224, 224, 3)), features, head])
    model.save(root / "keras_model.h5")
    with h5py.File(root / "keras_model.h5", "r+") as f:  # what tf.keras 2 writes, and Keras 3 refuses
        config = json.loads(f.attrs["model_config"])
        depthwise = [layer for layer in _layers(config) if layer["class_name"] == "DepthwiseConv2D"]
        assert depthwise
        for layer in depthwise:
            layer["config"]["groups"] = 1
        f.attrs["model_config"] = json.dumps(config)
    (root / "labels.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(labels)))
    return root, model


def test_teachable_machine_export_converts_and_scores_as_keras_does_on_minus_one_to_one(tmp_path):
    folder, model = teachable_folder(tmp_path / "tm")
    with pytest.raises((TypeError, ValueError)):  # what Keras 3 alone says to such a file
        keras.models.load_model(folder / "keras_model.h5", compile=False)
    out = tmp_path / "mine.onnx"
    proc = edgevision("adopt", str(folder), "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "parity" in proc.stderr and "edgevision predict --model" in proc.stderr
    runner = Runner(out, RunnerOptions(providers="cpu"))
    assert runner.spec.kind == "classify" and runner.spec.labels == LABELS and runner.spec.input_hw == (224, 224)
    rng = np.random.default_rng(1)
    frame_bgr = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    expected = model.predict(frame_bgr[None, ..., ::-1].astype(np.float32) / 127.5 - 1, verbose=0)[0]  # RGB, -1..1
    np.testing.assert_allclose(runner(frame_bgr).probs, expected, atol=1e-4)
    assert_one_line_error(edgevision("adopt", str(folder / "keras_model.h5"), "--out", str(out)), "exists")


def test_teachable_machine_mistakes_are_one_line(tmp_path):
    folder, _ = teachable_folder(tmp_path / "tm", labels=("a", "b"))
    (folder / "labels.txt").write_text("0 a\n1 b\n2 c\n")
    assert_one_line_error(edgevision("adopt", str(folder), "--out", str(tmp_path / "x.onnx"), timeout=300),
                          "outputs (None, 2) but there are 3 labels")
    assert not (tmp_path / "x.onnx").exists()
    assert_one_line_error(edgevision("adopt", str(tmp_path), "--out", str(tmp_path / "x.onnx")),
                          "keras_model.h5 not found")


def test_labels_txt_reads_teachable_machines_numbered_lines_and_plain_ones(tmp_path):
    (tmp_path / "a.txt").write_text("0 Class 1\n1 Class 2\n")
    (tmp_path / "b.txt").write_text("cat\ndog\n\n")
    assert read_labels(tmp_path / "a.txt") == ("Class 1", "Class 2")
    assert read_labels(tmp_path / "b.txt") == ("cat", "dog")

"""The code that makes models/backbone.onnx: MobileNetV2 features from Keras to one ONNX file with its spec,
free height and width, equal to Keras at every size the heads use (needs the train extra)."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")
pytestmark = pytest.mark.train

import onnxruntime as ort  # noqa: E402
from conftest import SHARED_WEIGHTS, needs_shared  # noqa: E402
from edgevision.deploy.embed import BackboneSpec, read_backbone_spec  # noqa: E402
from edgevision.training.backbone import build_features, convert_features, make_backbone, parity_frames  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_the_converted_backbone_equals_keras_at_any_size_and_carries_its_spec(tmp_path):
    model = build_features("none")  # random weights: the conversion is what is tested
    spec = BackboneSpec(input_hw=(96, 96), dim=1280, name="test")
    proto = convert_features(model, spec)
    path = tmp_path / "bb.onnx"
    path.write_bytes(proto.SerializeToString())
    assert read_backbone_spec(path).dim == 1280 and read_backbone_spec(path).input_hw == (96, 96)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in (64, 96):
        x = parity_frames(None, size, limit=3)
        got = session.run(None, {"image": x})[0]
        assert got.shape == (3, 1280)
        assert np.abs(model.predict(x, verbose=0) - got).max() < 1e-3


def test_make_backbone_refuses_missing_weights_and_never_overwrites(tmp_path):
    from edgevision.deploy.errors import UserError

    with pytest.raises(UserError, match="weights file not found"):
        make_backbone(str(tmp_path / "nope.h5"), tmp_path / "bb.onnx")
    (tmp_path / "bb.onnx").write_bytes(b"mine")
    with pytest.raises(UserError, match="exists"):
        make_backbone("imagenet", tmp_path / "bb.onnx")
    assert (tmp_path / "bb.onnx").read_bytes() == b"mine"


@needs_shared(SHARED_WEIGHTS)
def test_the_shipped_backbone_equals_keras_with_the_imagenet_weights():
    path = MODELS / "backbone.onnx"
    model = build_features(str(SHARED_WEIGHTS))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = parity_frames(None, 160, limit=4)
    assert np.abs(model.predict(x, verbose=0) - session.run(None, {"image": x})[0]).max() < 1e-3

"""Tiny ONNX models of every task kind, built with onnx.helper (no TensorFlow), for the tests.

- classify: mean colour -> softmax over ('red', 'green', 'blue'); a red BGR frame is 'red'.
- keypoints: two fixed points ('nose' at (0.25, 0.75), 'chin' at (0.5, 0.5)) in input space.
- segment: a pixel is class 1 ('thing') where its red channel is above 127.
- detect: three fixed candidate boxes; two overlap (class 0) and one is class 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from edgevision.deploy.spec import SPEC_KEY
from onnx import TensorProto, helper, numpy_helper

LABELS = {
    "classify": ("red", "green", "blue"),
    "keypoints": ("nose", "chin"),
    "segment": ("background", "thing"),
    "detect": ("cat", "dog"),
}
KEYPOINTS = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
DETECT_BOXES = np.array([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]], dtype=np.float32)
DETECT_SCORES = np.array([[0.9, 0.05], [0.8, 0.1], [0.1, 0.7]], dtype=np.float32)


def _const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def build(kind: str, input_hw=(32, 48), batch: int | str = "batch", spec: dict | None = None,
          with_spec: bool = True) -> onnx.ModelProto:
    h, w = input_hw
    labels = LABELS[kind]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, h, w, 3])
    inits, nodes, outputs = [], [], []
    # zero (n, 1, 1) from the image, to give constants the batch dimension
    nodes.append(helper.make_node("ReduceMean", ["image"], ["mean_all"], axes=[1, 2, 3], keepdims=1))  # (n,1,1,1)
    inits.append(_const("zero", np.array(0.0, dtype=np.float32)))
    nodes.append(helper.make_node("Mul", ["mean_all", "zero"], ["zeros4"]))
    inits.append(_const("sq", np.array([3], dtype=np.int64)))
    nodes.append(helper.make_node("Squeeze", ["zeros4", "sq"], ["zeros3"]))  # (n, 1, 1)
    if kind == "classify":
        inits += [_const("W", np.eye(3, dtype=np.float32) * 0.1), _const("b", np.zeros(3, np.float32))]
        nodes += [
            helper.make_node("ReduceMean", ["image"], ["mean_rgb"], axes=[1, 2], keepdims=0),  # (n, 3)
            helper.make_node("Gemm", ["mean_rgb", "W", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ]
        outputs.append(helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 3]))
    elif kind == "keypoints":
        inits.append(_const("pts", KEYPOINTS[None]))  # (1, 2, 2)
        nodes.append(helper.make_node("Add", ["zeros3", "pts"], ["points"]))
        outputs.append(helper.make_tensor_value_info("points", TensorProto.FLOAT, [batch, 2, 2]))
    elif kind == "segment":
        inits += [_const("starts", np.array([0], np.int64)), _const("ends", np.array([1], np.int64)),
                  _const("ax3", np.array([3], np.int64)), _const("scale", np.array(1 / 255, np.float32)),
                  _const("half", np.array(0.5, np.float32))]
        nodes += [
            helper.make_node("Slice", ["image", "starts", "ends", "ax3"], ["red"]),  # (n,h,w,1), RGB input
            helper.make_node("Mul", ["red", "scale"], ["red01"]),
            helper.make_node("Sub", ["red01", "half"], ["fg"]),
            helper.make_node("Neg", ["fg"], ["bg"]),
            helper.make_node("Concat", ["bg", "fg"], ["logits"], axis=3),
        ]
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, h, w, 2]))
    elif kind == "detect":
        inits += [_const("cboxes", DETECT_BOXES[None]), _const("cscores", DETECT_SCORES[None])]
        nodes += [helper.make_node("Add", ["zeros3", "cboxes"], ["boxes"]),
                  helper.make_node("Add", ["zeros3", "cscores"], ["scores"])]
        outputs += [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, 3, 4]),
                    helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 3, 2])]
    else:
        raise ValueError(kind)
    graph = helper.make_graph(nodes, f"tiny_{kind}", [image], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if with_spec:
        fields = {"kind": kind, "input_hw": list(input_hw), "labels": list(labels)}
        if kind == "segment":
            fields["output"] = "logits"
        fields.update(spec or {})
        helper.set_model_props(model, {SPEC_KEY: json.dumps(fields)})  # raw: tests may write bad specs
    onnx.checker.check_model(model)
    return model


def save(kind: str, path: Path, **kwargs) -> Path:
    onnx.save(build(kind, **kwargs), path)
    return path


def save_backbone(path: Path, dim: int = 6, input_hw=(32, 32)) -> Path:
    """A tiny feature backbone as models/backbone.onnx is made: image (n, h, w, 3) RGB 0..255, any h and w ->
    features (n, dim): the mean colour through a fixed seeded matrix and a ReLU, with its backbone spec."""
    from edgevision.deploy.embed import BACKBONE_KEY, BackboneSpec

    w = np.random.default_rng(0).standard_normal((3, dim)).astype(np.float32) / 255.0
    nodes = [helper.make_node("ReduceMean", ["image"], ["mean_rgb"], axes=[1, 2], keepdims=0),  # (n, 3)
             helper.make_node("MatMul", ["mean_rgb", "W"], ["pre"]),  # (n, dim)
             helper.make_node("Relu", ["pre"], ["features"])]
    graph = helper.make_graph(
        nodes, "tiny_backbone", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", "h", "w", 3])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", dim])], [_const("W", w)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {BACKBONE_KEY: BackboneSpec(input_hw=input_hw, dim=dim, name="tiny").to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


COLOURS_BGR = {"red": (40, 40, 220), "green": (40, 220, 40), "blue": (220, 40, 40)}


def colour_photos(root: Path, per_class: int = 6, seed: int = 0, classes=("red", "green", "blue")) -> Path:
    """root/<class>/*.png: noisy flat colour photos of different sizes, one colour per class."""
    import cv2

    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = int(rng.integers(24, 64)), int(rng.integers(24, 64))
            image = np.clip(np.array(COLOURS_BGR[name]) + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / name / f"{name}_{i}.png"), image)
    return root

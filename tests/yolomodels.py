"""Tiny ONNX graphs laid out like Ultralytics YOLO exports (input ``images`` (1, 3, h, w), outputs ``output0``
[and ``output1``], the ``metadata_props`` Ultralytics' exporter writes as ``str(value)``), built with
onnx.helper: the outputs are constants chosen by the test (plus zero times the image, so the graph reads it),
except the classifier, which scores the mean of each RGB channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_HW = (64, 96)  # (h, w): letterboxed frames of other shapes get grey bars
CLASSES = {0: "cat", 1: "dog"}


def metadata(task: str, names: dict[int, str] = CLASSES, imgsz=INPUT_HW, end2end: bool = False,
             **extra: object) -> dict[str, str]:
    meta = {"description": f"Ultralytics YOLO11n-{task} model", "author": "Ultralytics",
            "date": "2025-01-01T00:00:00", "version": "8.3.0", "license": "AGPL-3.0 License",
            "docs": "https://docs.ultralytics.com", "stride": 32, "task": task, "batch": 1, "imgsz": list(imgsz),
            "names": names, "args": {"batch": 1, "half": False, "dynamic": False, "nms": False},
            "channels": 3, "end2end": end2end, **extra}
    return {k: str(v) for k, v in meta.items()}


def _model(outputs: dict[str, np.ndarray], meta: dict[str, str], imgsz=INPUT_HW) -> onnx.ModelProto:
    """A graph whose outputs are the given constants (each plus 0 * the image's mean)."""
    h, w = imgsz
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])
    nodes = [helper.make_node("ReduceMean", ["images"], ["mean_all"], axes=[1, 2, 3], keepdims=1),  # (1,1,1,1)
             helper.make_node("Mul", ["mean_all", "zero"], ["zeros4"])]
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    values = []
    for name, array in outputs.items():
        array = np.asarray(array, np.float32)
        inits.append(numpy_helper.from_array(array, f"{name}_const"))
        zeros = "zeros4"
        if array.ndim == 3:
            inits.append(numpy_helper.from_array(np.array([3], np.int64), f"{name}_axis"))
            nodes.append(helper.make_node("Squeeze", ["zeros4", f"{name}_axis"], [f"{name}_zeros"]))
            zeros = f"{name}_zeros"
        nodes.append(helper.make_node("Add", [zeros, f"{name}_const"], [name]))
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape)))
    graph = helper.make_graph(nodes, "yolo", [image], values, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    model.ir_version = 8
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    return model


def raw_rows(boxes_cxcywh: list, scores: list, extras: list | None = None, anchors: int = 12) -> np.ndarray:
    """(1, 4 + nc + e, anchors): the given candidates first, the other anchors scoring 0."""
    nc, e = len(scores[0]), len(extras[0]) if extras else 0
    out = np.zeros((1, 4 + nc + e, anchors), np.float32)
    for i, box in enumerate(boxes_cxcywh):
        out[0, :4, i] = box
        out[0, 4 : 4 + nc, i] = scores[i]
        if extras:
            out[0, 4 + nc :, i] = extras[i]
    return out


def detect(path: Path, output0: np.ndarray, **meta: object) -> Path:
    onnx.save(_model({"output0": output0}, metadata("detect", **meta)), path)
    return path


def segment(path: Path, output0: np.ndarray, protos: np.ndarray, **meta: object) -> Path:
    onnx.save(_model({"output0": output0, "output1": protos}, metadata("segment", **meta)), path)
    return path


def pose(path: Path, output0: np.ndarray, kpt_shape=(3, 3), **meta: object) -> Path:
    meta.setdefault("names", {0: "person"})
    onnx.save(_model({"output0": output0}, metadata("pose", kpt_shape=list(kpt_shape), **meta)), path)
    return path


def classify(path: Path, names=("red", "green", "blue"), imgsz=(32, 32)) -> Path:
    """A classifier of the mean R, G, B (input RGB in 0..1, NCHW): a red frame is 'red'."""
    h, w = imgsz
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])
    nodes = [helper.make_node("ReduceMean", ["images"], ["rgb"], axes=[2, 3], keepdims=0),  # (1, 3)
             helper.make_node("Mul", ["rgb", "ten"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["output0"], axis=1)]
    inits = [numpy_helper.from_array(np.array(10.0, np.float32), "ten")]
    graph = helper.make_graph(nodes, "yolo-cls", [image],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, metadata("classify", names=dict(enumerate(names)), imgsz=imgsz))
    onnx.save(model, path)
    return path

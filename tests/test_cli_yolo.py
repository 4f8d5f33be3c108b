"""Models made elsewhere through the edgevision command: Ultralytics YOLO exports as they are (run, predict,
a chain, info), and ``adopt`` of a plain ONNX classifier."""

import hashlib
import json

import cv2
import numpy as np
import onnx
import pytest
import yolomodels as Y
from conftest import solid_frame
from onnx import TensorProto, helper
from test_cli import assert_one_line_error, edgevision

BOX = [48.0, 32.0, 20.0, 10.0]  # input pixels (cx, cy, w, h) -> source x 190..290, y 75..125 in a 480x200 frame


def yolo_model(task, path):
    if task == "detect":
        return Y.detect(path, Y.raw_rows([BOX], [[0.1, 0.9]]))
    if task == "segment":
        protos = np.full((1, 32, 16, 24), -10, np.float32)
        protos[0, 0, 7:9, 10:14] = 10
        return Y.segment(path, Y.raw_rows([BOX], [[0.9, 0.0]], extras=[[1.0] + [0.0] * 31]), protos)
    if task == "pose":
        return Y.pose(path, Y.raw_rows([BOX], [[0.9]], extras=[[40, 30, 0.9, 50, 35, 0.9, 56, 28, 0.9]]))
    return Y.classify(path)


@pytest.mark.parametrize("task,kind", [("detect", "detect"), ("segment", "instances"), ("pose", "poses"),
                                       ("classify", "classify")])
def test_yolo_exports_run_live_and_in_predict_without_tensorflow(tmp_path, synthetic_video, task, kind):
    model = str(yolo_model(task, tmp_path / f"{task}.onnx"))
    out, video = tmp_path / "out.jsonl", tmp_path / "overlay.mp4"
    proc = edgevision("run", "--model", model, "--source", str(synthetic_video(6)), "--no-display",
                      "--jsonl", str(out), "--record", str(video), check_tf=True)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr + "\n"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 6 and records[0]["result"]["task"] == kind and video.stat().st_size > 0
    cv2.imwrite(str(tmp_path / "wide.png"), np.full((200, 480, 3), 90, np.uint8))
    proc = edgevision("predict", "--model", model, str(tmp_path / "wide.png"), "--draw", str(tmp_path / "drawn"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[0])
    if task != "classify":
        assert result["detections"][0]["xyxy"] == [190.0, 75.0, 290.0, 125.0]
    if task == "pose":
        assert result["detections"][0]["points"]["p0"] == [200.0, 90.0]
    drawn = cv2.imread(str(tmp_path / "drawn" / "wide.png"))
    assert drawn.shape == (200, 480, 3) and (drawn != 90).any()


def test_a_yolo_detector_chains_into_a_yolo_classifier(tmp_path):
    det = str(yolo_model("detect", tmp_path / "det.onnx"))
    cls = str(Y.classify(tmp_path / "cls.onnx"))
    frame = np.full((200, 480, 3), 90, np.uint8)
    frame[60:140, 170:310] = (0, 0, 255)  # red around the box
    cv2.imwrite(str(tmp_path / "a.png"), frame)
    proc = edgevision("predict", "--model", det, "--then", cls, str(tmp_path / "a.png"))
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout)["detections"][0]
    assert first["then"]["label"] == "red" and first["xyxy"] == [190.0, 75.0, 290.0, 125.0]


def test_info_shows_a_yolo_export_and_a_plain_onnx_file_is_one_line_naming_adopt(tmp_path):
    proc = edgevision("info", str(yolo_model("pose", tmp_path / "pose.onnx")))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["spec"]["keypoint_names"] == ["p0", "p1", "p2"] and info["spec_from"].startswith("Ultralytics")
    plain = plain_classifier(tmp_path / "plain.onnx")
    assert_one_line_error(edgevision("info", str(plain)), "has no edgevision spec", "edgevision adopt")


def plain_classifier(path, nchw=True, size=(32, 32), classes=3):
    """An ONNX classifier made elsewhere: NCHW (or NHWC) input, ImageNet-style normalised, mean RGB -> softmax."""
    h, w = size
    dims = [1, 3, h, w] if nchw else [1, h, w, 3]
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    nodes = [helper.make_node("ReduceMean", ["input"], ["rgb"], axes=[2, 3] if nchw else [1, 2], keepdims=0),
             helper.make_node("Softmax", ["rgb"], ["prob"], axis=1)]
    if classes != 3:
        nodes[1:] = [helper.make_node("Slice", ["rgb", "s", "e", "a"], ["two"]),
                     helper.make_node("Softmax", ["two"], ["prob"], axis=1)]
    inits = [onnx.numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("s", [0]), ("e", [2]), ("a", [1]))]
    graph = helper.make_graph(nodes, "plain", [image],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, min(classes, 3)])],
                              inits if classes != 3 else [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("nchw", [True, False])
def test_adopt_writes_a_runnable_copy_with_a_spec_and_leaves_the_original_untouched(tmp_path, nchw):
    plain = plain_classifier(tmp_path / "plain.onnx", nchw=nchw)
    before = hashlib.sha256(plain.read_bytes()).hexdigest()
    mine = tmp_path / "mine.onnx"
    proc = edgevision("adopt", str(plain), "--task", "classify", "--labels", "red,green,blue", "--mean",
                      "123.675,116.28,103.53", "--std", "58.395,57.12,57.375", "--out", str(mine))
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256(plain.read_bytes()).hexdigest() == before
    meta = {p.key: p.value for p in onnx.load(mine).metadata_props}
    spec = json.loads(meta["edgevision.spec"])
    assert spec.get("layout", "NHWC") == ("NCHW" if nchw else "NHWC") and spec["input_hw"] == [32, 32]
    (tmp_path / "green").mkdir()
    cv2.imwrite(str(tmp_path / "green" / "g.png"), solid_frame(40, 60, (0, 255, 0)))
    proc = edgevision("predict", "--model", str(mine), str(tmp_path / "green"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["label"] == "green"
    assert_one_line_error(edgevision("adopt", str(plain), "--task", "classify", "--labels", "a,b,c",
                                     "--out", str(mine)), "exists")


def test_adopt_mistakes_are_one_line_and_write_nothing(tmp_path):
    plain = plain_classifier(tmp_path / "plain.onnx")
    out = tmp_path / "out.onnx"
    cases = [
        (["--task", "classify", "--labels", "a,b"], "outputs do not match its spec"),  # 3 outputs, 2 labels
        (["--task", "classify", "--labels", "a,b,c", "--size", "64"], "takes 32x32 images"),
        (["--task", "classify", "--labels", "a,b,c", "--std", "0"], "std must not contain zeros"),
        (["--labels", "a,b,c"], "--task is needed"),
    ]
    for extra, message in cases:
        assert_one_line_error(edgevision("adopt", str(plain), "--out", str(out), *extra), message)
        assert not out.exists() and not list(tmp_path.glob(".adopt-*"))
    mine = tmp_path / "mine.onnx"
    proc = edgevision("adopt", str(plain), "--task", "classify", "--labels", "a,b,c", "--out", str(mine))
    assert proc.returncode == 0, proc.stderr
    assert_one_line_error(edgevision("adopt", str(mine), "--task", "classify", "--labels", "a,b,c", "--out",
                                     str(tmp_path / "again.onnx")), "already has an edgevision spec")

"""Ultralytics YOLO exports run as they are: graphs with their inputs, output layouts and metadata (built in
tests/yolomodels.py) give results in source pixels, exactly where the letterbox puts them back."""

from __future__ import annotations

import numpy as np
import pytest
import yolomodels as Y
from edgevision.deploy.errors import UserError
from edgevision.deploy.runner import Runner, RunnerOptions, model_info
from edgevision.deploy.tasks.instances import Instances
from edgevision.deploy.tasks.poses import Poses

# A 480x200 frame into the 96x64 input: scale 0.2, 40 rows of picture, 12 grey rows above and below.
FRAME = np.full((200, 480, 3), 90, np.uint8)
# One box in input pixels: centre (48, 32), 20 x 10 -> x 38..58, y 27..37 -> source x 190..290, y 75..125.
BOX = [48.0, 32.0, 20.0, 10.0]
BOX_SOURCE = [190.0, 75.0, 290.0, 125.0]


def run(path, frame=FRAME, **options):
    return Runner(path, RunnerOptions(providers="cpu", **options))(frame)


def test_yolo_detect_box_lands_in_source_pixels_through_the_letterbox(tmp_path):
    out = Y.raw_rows([BOX], [[0.1, 0.9]])
    det = run(Y.detect(tmp_path / "det.onnx", out))
    assert det.kind == "detect"
    np.testing.assert_allclose(det.xyxy, [BOX_SOURCE], atol=1e-3)
    assert det.to_dict()["detections"][0]["label"] == "dog"
    assert det.score.tolist() == pytest.approx([0.9])


def test_yolo_detect_runs_class_aware_nms_and_its_threshold(tmp_path):
    boxes = [BOX, [49.0, 32.0, 20.0, 10.0], [49.0, 32.0, 20.0, 10.0], [10.0, 10.0, 8.0, 8.0]]
    scores = [[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.2, 0.0]]  # the 2nd overlaps the 1st; the 3rd is a dog
    path = Y.detect(tmp_path / "det.onnx", Y.raw_rows(boxes, scores))
    det = run(path)
    assert sorted(det.label_id.tolist()) == [0, 1]  # one cat (NMS), one dog, the 0.2 box under 0.25
    assert len(run(path, score_threshold=0.1)) == 3


def test_yolo_end2end_rows_are_taken_as_they_are(tmp_path):
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, 0] = [38, 27, 58, 37, 0.8, 1]
    rows[0, 1] = [38, 27, 58, 37, 0.7, 1]  # no NMS: the graph chose both
    det = run(Y.detect(tmp_path / "e2e.onnx", rows, end2end=True))
    np.testing.assert_allclose(det.xyxy, [BOX_SOURCE, BOX_SOURCE], atol=1e-3)
    assert det.label_id.tolist() == [1, 1]


def test_yolo_segment_mask_is_exact_in_source_pixels(tmp_path):
    # prototype cells (4 input pixels each) 10..13 x 7..8 are +10, the rest -10: the upsampled logits cross 0
    # at input x 40 and 56, y 28 and 36 -> source x 200..280, y 80..120 (inside the box 190..290 x 75..125)
    protos = np.zeros((1, 32, 16, 24), np.float32)
    protos[0, 0] = -10
    protos[0, 0, 7:9, 10:14] = 10
    coeffs = [1.0] + [0.0] * 31
    out = Y.raw_rows([BOX], [[0.9, 0.0]], extras=[coeffs])
    result = run(Y.segment(tmp_path / "seg.onnx", out, protos))
    assert isinstance(result, Instances)
    np.testing.assert_allclose(result.detections.xyxy, [BOX_SOURCE], atol=1e-3)
    mask = result.masks[0]
    expected = np.zeros((200, 480), bool)
    expected[80:120, 200:280] = True
    assert not (mask & ~expected).any()  # nothing outside the rectangle
    assert mask[80:120, 240].all() and mask[100, 200:280].all()  # its edges exactly where they belong
    assert not mask[[79, 120], 240].any() and not mask[100, [199, 280]].any()
    missing = expected & ~mask  # the bilinear zero line rounds the corners off (as Ultralytics' upsampling does)
    assert missing[90:110, :].sum() == 0 and missing[:, 210:270].sum() == 0  # half a cell: 10 px
    item = result.to_dict()["detections"][0]
    assert item["area"] == int(mask.sum()) > 0.95 * 40 * 80
    xs, ys = np.array(item["polygon"]).T
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (200, 279, 80, 119)
    frame = FRAME.copy()
    result.draw(frame)
    assert (frame[100, 240] != 90).any() and (frame[190, 20] == 90).all()


def test_yolo_segment_drops_a_box_whose_mask_is_empty_as_ultralytics_does(tmp_path):
    protos = np.full((1, 32, 16, 24), -10, np.float32)
    protos[0, 0, 7:9, 10:14] = 10
    out = Y.raw_rows([BOX, [10.0, 10.0, 8.0, 8.0]], [[0.9, 0.0], [0.0, 0.8]], extras=[[1.0] + [0.0] * 31] * 2)
    result = run(Y.segment(tmp_path / "seg.onnx", out, protos))
    assert len(result) == 1 and result.detections.label_id.tolist() == [0]  # the dog's mask was all -10


def test_yolo_segment_end2end_masks_too(tmp_path):
    protos = np.full((1, 32, 16, 24), -10, np.float32)
    protos[0, 0, 7:9, 10:14] = 10
    rows = np.zeros((1, 300, 6 + 32), np.float32)
    rows[0, 0, :7] = [38, 27, 58, 37, 0.8, 0, 1.0]
    result = run(Y.segment(tmp_path / "seg.onnx", rows, protos, end2end=True))
    ys, xs = np.nonzero(result.masks[0])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (200, 279, 80, 119)


def test_yolo_pose_points_land_in_source_pixels(tmp_path):
    points = [40, 30, 0.9, 50, 35, 0.2, 56, 28, 0.95]  # x, y, visibility per point, input pixels
    out = Y.raw_rows([BOX], [[0.9]], extras=[points])
    result = run(Y.pose(tmp_path / "pose.onnx", out))
    assert isinstance(result, Poses)
    np.testing.assert_allclose(result.xy[0], [[200, 90], [250, 115], [280, 80]], atol=1e-3)
    np.testing.assert_allclose(result.conf[0], [0.9, 0.2, 0.95], atol=1e-6)
    item = result.to_dict()["detections"][0]
    assert item["label"] == "person" and item["points"]["p1"] == [250.0, 115.0]
    result.draw(FRAME.copy())


def test_yolo_pose_reads_17_point_models_as_coco(tmp_path):
    out = Y.raw_rows([BOX], [[0.9]], extras=[[48, 32] * 17])  # two values a point: no visibility
    result = run(Y.pose(tmp_path / "pose.onnx", out, kpt_shape=(17, 2)))
    assert result.names[0] == "nose" and result.conf is None
    np.testing.assert_allclose(result.xy[0, 16], [240, 100], atol=1e-3)


def test_yolo_classify_reads_rgb_nchw_scaled_to_one(tmp_path):
    path = Y.classify(tmp_path / "cls.onnx")
    red_bgr = np.zeros((50, 70, 3), np.uint8)
    red_bgr[..., 2] = 255
    result = run(path, red_bgr)
    assert result.label == "red"
    assert result.score > 0.99  # softmax(10 * (1, 0, 0)): the input was scaled to 0..1


@pytest.mark.parametrize("task,output", [("detect", np.zeros((1, 7, 12))), ("detect", np.zeros((1, 300, 7)))])
def test_unknown_yolo_layout_is_one_line_naming_what_was_found(tmp_path, task, output):
    with pytest.raises(UserError) as err:
        Runner(Y.detect(tmp_path / "odd.onnx", output), RunnerOptions(providers="cpu"))
    message = str(err.value)
    assert "\n" not in message and str(tuple(output.shape)) in message and "4 + 2 classes" in message


def test_yolo_task_edgevision_does_not_run_is_refused_in_one_line(tmp_path):
    path = tmp_path / "obb.onnx"
    Y.detect(path, Y.raw_rows([BOX], [[0.9, 0.1]]))
    import onnx

    model = onnx.load(path)
    next(p for p in model.metadata_props if p.key == "task").value = "obb"
    onnx.save(model, path)
    with pytest.raises(UserError, match="Ultralytics 'obb' model; edgevision runs detect, segment, pose"):
        Runner(path, RunnerOptions(providers="cpu"))


def test_info_describes_a_yolo_export(tmp_path):
    info = model_info(Y.detect(tmp_path / "det.onnx", Y.raw_rows([BOX], [[0.9, 0.1]])))
    assert info["spec"]["head"] == "yolo" and info["spec"]["layout"] == "NCHW"
    assert info["spec"]["labels"] == ["cat", "dog"] and info["spec"]["input_hw"] == [64, 96]
    assert info["spec_from"] == "Ultralytics 8.3.0 metadata"

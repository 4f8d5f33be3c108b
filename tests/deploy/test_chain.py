"""Detector -> classifier chains: the crop geometry by hand, and a chain of two tiny models."""

from __future__ import annotations

import numpy as np
import pytest
from edgevision.deploy.chain import ChainRunner
from edgevision.deploy.errors import UserError
from edgevision.deploy.runner import Runner, RunnerOptions
from edgevision.deploy.tasks import summary_text
from edgevision.deploy.tasks.chain import crop, square_crop_box
from tinymodels import KEYPOINTS


def test_square_crop_box_hand_computed():
    # A 40 x 20 box centred at (30, 20): side 40 * (1 + 2 * 0.25) = 60 around the same centre.
    np.testing.assert_allclose(square_crop_box(np.float32([[10, 10, 50, 30]]), 0.25), [[0, -10, 60, 50]])


def test_crop_fills_what_lies_outside_the_frame_with_grey():
    frame = np.zeros((10, 10, 3), np.uint8)
    frame[:] = 200
    patch = crop(frame, np.float32([-5, -5, 5, 5]))
    assert patch.shape == (10, 10, 3)
    assert (patch[5:, 5:] == 200).all() and (patch[:5] == 114).all() and (patch[:, :5] == 114).all()
    np.testing.assert_array_equal(crop(frame, np.float32([2, 3, 6, 9])), frame[3:9, 2:6])


def _painted_frame(h: int, w: int) -> np.ndarray:
    """Red, with the tiny detector's 'cat' box (0.1..0.5) green and its 'dog' box (0.6..0.9) blue (BGR)."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:] = (0, 0, 255)
    frame[int(0.1 * h) : int(0.5 * h), int(0.1 * w) : int(0.5 * w)] = (0, 255, 0)
    frame[int(0.6 * h) : int(0.9 * h), int(0.6 * w) : int(0.9 * w)] = (255, 0, 0)
    return frame


@pytest.mark.parametrize("hw", [(200, 300), (300, 200)])
def test_the_chain_classifies_the_region_each_box_covers(tiny_model, hw):
    options = RunnerOptions(providers="cpu")
    chain = ChainRunner(Runner(tiny_model("detect"), options), Runner(tiny_model("classify"), options), margin=0.0)
    result = chain(_painted_frame(*hw))
    h, w = hw
    names = [result.detections.labels[i] for i in result.detections.label_id]
    assert names == ["cat", "dog"]  # the overlapping second cat box was suppressed
    assert [r.label for r in result.then] == ["green", "blue"]
    np.testing.assert_allclose(result.detections.xyxy[0], [0.1 * w, 0.1 * h, 0.5 * w, 0.5 * h], atol=1.0)
    side = 0.4 * max(h, w)  # margin 0: the square's side is the box's longer side
    np.testing.assert_allclose(result.crop_xyxy[0, 2:] - result.crop_xyxy[0, :2], [side, side], atol=1.0)
    record = result.to_dict()
    assert record["task"] == "chain" and record["detections"][1]["then"]["label"] == "blue"
    assert "crop_xyxy" in record["detections"][0]


def test_a_chain_needs_a_detector_then_a_classifier(tiny_model):
    options = RunnerOptions(providers="cpu")
    det, cls = Runner(tiny_model("detect"), options), Runner(tiny_model("classify"), options)
    with pytest.raises(UserError, match="detection model first"):
        ChainRunner(cls, det)
    with pytest.raises(UserError, match="classification or keypoint model"):
        ChainRunner(det, Runner(tiny_model("segment"), options))
    with pytest.raises(UserError, match="crop-margin"):
        ChainRunner(det, cls, margin=2.0)


def test_frames_without_boxes_give_empty_chained_results(tiny_model):
    options = RunnerOptions(providers="cpu", score_threshold=0.99)
    chain = ChainRunner(Runner(tiny_model("detect"), options), Runner(tiny_model("classify"), options))
    results, _ = chain.infer([_painted_frame(64, 64), _painted_frame(32, 48)])
    assert [len(r.detections) for r in results] == [0, 0] and all(r.then == () for r in results)


@pytest.mark.parametrize("hw,margin", [((200, 300), 0.0), ((300, 200), 0.3), ((97, 131), 0.45)])
def test_a_keypoint_stage_gives_its_points_in_the_frames_pixels(tiny_model, hw, margin):
    """The tiny keypoint model puts 'nose' at (0.25, 0.75) and 'chin' at (0.5, 0.5) of its square input:
    on each square crop of side s that starts at the rounded corner (x0, y0) they are at (x0 + 0.25 s,
    y0 + 0.75 s) and (x0 + 0.5 s, y0 + 0.5 s) of the frame, also where the square leaves the frame."""
    options = RunnerOptions(providers="cpu")
    then = Runner(tiny_model("keypoints", input_hw=(32, 32)), options)
    chain = ChainRunner(Runner(tiny_model("detect"), options), then, margin=margin)
    frame = _painted_frame(*hw)
    result = chain(frame)
    assert len(result.then) == 2 and result.top_label() is None
    for points, square in zip(result.then, result.crop_xyxy):
        x0, y0, x1, y1 = (int(round(float(v))) for v in square)
        side = np.float32([x1 - x0, y1 - y0])
        np.testing.assert_allclose(points.xy, np.float32([x0, y0]) + KEYPOINTS * side, atol=1e-3)
        # the same as the keypoint model on the crop by hand, moved by the crop's corner
        alone = then(crop(frame, square))
        np.testing.assert_allclose(points.xy, alone.xy + np.float32([x0, y0]), atol=1e-4)
    if margin > 0.4:  # the squares reach past the frame's edge: the points may lie outside it
        assert (result.crop_xyxy[:, :2] < 0).any() or (result.crop_xyxy[:, 2:] > hw[::-1]).any()
    record = result.to_dict()
    nose = record["detections"][0]["then"]["points"]["nose"]
    np.testing.assert_allclose(nose, result.then[0].xy[0], atol=0.01)
    assert record["detections"][0]["then"]["task"] == "keypoints"
    assert "nose=(" in summary_text(record)
    drawn = frame.copy()
    result.draw(drawn)
    x, y = (int(round(v)) for v in result.then[0].xy[0])
    if 0 <= x < hw[1] and 0 <= y < hw[0]:
        assert (drawn[y, x] != frame[y, x]).any()  # the point is drawn where it is

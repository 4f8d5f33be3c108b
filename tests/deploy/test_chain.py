"""Detector -> classifier chains: the crop geometry by hand, and a chain of two tiny models."""

from __future__ import annotations

import numpy as np
import pytest
from edgevision.deploy.chain import ChainRunner
from edgevision.deploy.errors import UserError
from edgevision.deploy.runner import Runner, RunnerOptions
from edgevision.deploy.tasks.chain import crop, square_crop_box


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
    with pytest.raises(UserError, match="classification model"):
        ChainRunner(det, Runner(tiny_model("segment"), options))
    with pytest.raises(UserError, match="crop-margin"):
        ChainRunner(det, cls, margin=2.0)


def test_frames_without_boxes_give_empty_chained_results(tiny_model):
    options = RunnerOptions(providers="cpu", score_threshold=0.99)
    chain = ChainRunner(Runner(tiny_model("detect"), options), Runner(tiny_model("classify"), options))
    results, _ = chain.infer([_painted_frame(64, 64), _painted_frame(32, 48)])
    assert [len(r.detections) for r in results] == [0, 0] and all(r.then == () for r in results)

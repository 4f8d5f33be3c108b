import numpy as np
import pytest
from edgevision.deploy import ops
from edgevision.deploy.spec import TaskSpec
from edgevision.deploy.tasks import classify, detect, segment


def test_to_model_color_is_the_one_bgr_to_rgb_conversion():
    frame = np.zeros((2, 2, 3), np.uint8)
    frame[..., 2] = 200  # red in BGR
    assert ops.to_model_color(frame, "RGB")[0, 0].tolist() == [200, 0, 0]
    assert ops.to_model_color(frame, "BGR")[0, 0].tolist() == [0, 0, 200]
    assert ops.to_model_color(np.zeros((4, 5), np.uint8), "RGB").shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"must have shape \(h, w, 3\)"):
        ops.to_model_color(np.zeros((4, 5, 4), np.uint8), "RGB")


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_fit_to_input_maps_points_back_to_source_pixels_for_non_square_frames(mode):
    frame = np.zeros((300, 800, 3), np.uint8)
    out, placement = ops.fit_to_input(frame, (128, 128), mode)
    assert out.shape == (128, 128, 3)
    src = np.array([[0, 0], [800, 300], [400, 150]], np.float32)
    as_input = src * np.float32(placement.scale_xy) + np.float32(placement.pad_xy)
    np.testing.assert_allclose(placement.to_source(as_input), src, atol=1e-3)


def test_letterbox_pads_evenly_and_keeps_aspect():
    frame = np.full((100, 200, 3), 255, np.uint8)
    out, placement = ops.fit_to_input(frame, (100, 100), "letterbox")
    assert placement.scale_xy == (0.5, 0.5)
    assert placement.pad_xy == (0.0, 25.0)
    assert out[0, 50].tolist() == [ops.LETTERBOX_FILL] * 3  # padding
    assert out[50, 50].tolist() == [255, 255, 255]  # image


def _photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth shapes plus pixel-level grain (detail finer than any output pixel): a frame without a file."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 128 + 80 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
    img = base[..., None] + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("hw", [(480, 640), (720, 1280), (1080, 1920), (777, 1001), (300, 250)])
@pytest.mark.parametrize("size", [(224, 224), (96, 160)])
def test_shrink_averages_like_inter_area(hw, size):
    import cv2

    image = _photo_like(*hw)
    ours = ops.shrink(image, size).astype(np.float32)
    area = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    assert ours.shape == area.shape
    assert np.abs(ours - area).mean() < 2.5  # grey levels of 255; the grain alone differs by 12
    linear = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR).astype(np.float32)
    if min(hw[0] / size[1], hw[1] / size[0]) >= 2:
        assert np.abs(linear - area).mean() > 2 * np.abs(ours - area).mean()


def test_shrink_is_inter_area_exactly_at_integer_factors_and_averages_away_one_pixel_stripes():
    import cv2

    image = _photo_like(448, 672)
    assert np.array_equal(ops.shrink(image, (224, 224)), cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA))
    stripes = np.zeros((480, 640, 3), np.uint8)
    stripes[:, 1::2] = 255  # the finest detail a frame has: linear resizing alone keeps some of it as bands
    out = ops.shrink(stripes, (224, 224)).astype(np.float32)
    assert abs(out.mean() - 127.5) < 1 and out.std() < 2


def test_fit_to_input_down_scales_through_shrink_and_up_scales_linearly():
    import cv2

    image = _photo_like(480, 640)
    out, _ = ops.fit_to_input(image, (224, 224), "stretch")
    assert np.array_equal(out, ops.shrink(image, (224, 224)))
    small = _photo_like(50, 60)
    out, _ = ops.fit_to_input(small, (100, 120), "stretch")
    assert np.array_equal(out, cv2.resize(small, (120, 100), interpolation=cv2.INTER_LINEAR))
    boxed, placement = ops.fit_to_input(image, (224, 224), "letterbox")
    assert np.array_equal(boxed[28:196], ops.shrink(image, (224, 168))) and placement.pad_xy == (0.0, 28.0)


def test_preprocess_applies_mean_and_std_from_the_spec():
    spec = TaskSpec("classify", (4, 4), ("a", "b"), mean=(100, 100, 100), std=(2, 2, 2))
    batch, _ = ops.preprocess([np.full((8, 8, 3), 200, np.uint8)], spec)
    assert batch.shape == (1, 4, 4, 3) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, 50.0)


def test_nms_keeps_the_best_of_overlapping_boxes_hand_computed():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 4]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # IoU(0,1) = 90 / 110 = 0.818; IoU(0,3) = 40 / 100 = 0.4; box 2 is apart.
    assert detect.nms(boxes, scores, 0.5).tolist() == [0, 2, 3]
    assert detect.nms(boxes, scores, 0.3).tolist() == [0, 2]
    assert detect.nms(boxes, scores, 0.9).tolist() == [0, 1, 2, 3]


def test_box_iou_hand_computed():
    boxes = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]], np.float32)
    iou = detect.box_iou(np.array([0, 0, 2, 2], np.float32), boxes)
    np.testing.assert_allclose(iou, [1 / 7, 1.0, 0.0], atol=1e-6)


def test_batched_nms_never_suppresses_across_classes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert detect.batched_nms(boxes, scores, np.array([0, 1]), 0.5).tolist() == [0, 1]
    assert detect.batched_nms(boxes, scores, np.array([1, 1]), 0.5).tolist() == [0]
    assert detect.batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0), 0.5).size == 0


def test_decode_detect_returns_source_pixel_boxes_after_threshold_and_nms():
    spec = TaskSpec("detect", (100, 100), ("cat", "dog"))
    frame = np.zeros((200, 400, 3), np.uint8)  # non-square
    _, placements = ops.preprocess([frame], spec)
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.11, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]]], np.float32)
    scores = np.array([[[0.9, 0.0], [0.85, 0.0], [0.1, 0.2]]], np.float32)
    (det,) = detect.decode([boxes, scores], spec, placements)
    assert len(det) == 1  # the duplicate is suppressed, the low score dropped
    np.testing.assert_allclose(det.xyxy[0], [40, 40, 200, 120], atol=1e-3)
    assert det.label_id.tolist() == [0] and det.score[0] == pytest.approx(0.9)
    (det_low,) = detect.decode([boxes, scores], spec, placements, score_threshold=0.15)
    assert det_low.label_id.tolist() == [0, 1]


def test_decode_segment_upsamples_once_to_the_source_size_and_crops_letterbox_padding():
    spec = TaskSpec("segment", (4, 4), ("bg", "fg"), resize="letterbox", output="probs")
    frame = np.zeros((20, 40, 3), np.uint8)  # letterboxed into rows 1..2 of the 4x4 input
    _, placements = ops.preprocess([frame], spec)
    probs = np.zeros((1, 4, 4, 2), np.float32)
    probs[..., 0] = 1.0
    probs[0, :, 2:, 1], probs[0, :, 2:, 0] = 1.0, 0.0  # right half is foreground
    (seg,) = segment.decode([probs], spec, placements)
    assert seg.class_map.shape == (20, 40)
    assert seg.class_map[:, :18].max() == 0 and seg.class_map[:, 22:].min() == 1


def test_decode_rejects_outputs_of_the_wrong_shape_with_both_shapes_named():
    spec = TaskSpec("classify", (4, 4), ("a", "b", "c"))
    with pytest.raises(ValueError, match=r"must output \(n, 3\), got \(1, 2\)"):
        classify.decode([np.zeros((1, 2), np.float32)], spec, [])

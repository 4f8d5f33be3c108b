"""Detection data, box augmentation, targets and AP: hand-computed cases, no TensorFlow."""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest
from edgevision.deploy import boxdata
from edgevision.deploy.errors import UserError
from edgevision.deploy.results import Detections
from edgevision.deploy.tasks import detect as det_task
from edgevision.training import detection as det

VOC = """<annotation><size><width>200</width><height>100</height><depth>3</depth></size>
<object><name>{a}</name><difficult>0</difficult><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>60</xmax><ymax>80</ymax></bndbox></object>
<object><name>{b}</name><difficult>1</difficult><bndbox><xmin>101</xmin><ymin>1</ymin><xmax>200</xmax><ymax>50</ymax></bndbox></object>
</annotation>"""


def _image(path, w=200, h=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))


def test_voc_names_are_mapped_by_rename_rules_and_pixels_made_zero_based(tmp_path):
    _image(tmp_path / "3" / "a.jpg")
    (tmp_path / "3" / "a.xml").write_text(VOC.format(a="3-hand", b="cat"))
    _image(tmp_path / "b.jpg")  # no label file: skipped, counted
    samples, stats = boxdata.read_box_folder(tmp_path, ("hand",), ("*-hand:hand",))
    assert len(samples) == 1 and stats == {"unlabelled_images": 1, "unmapped_boxes": 1}
    s = samples[0]
    np.testing.assert_allclose(s.xyxy, [[10, 20, 60, 80]])
    assert s.label.tolist() == [0] and s.names == ("3-hand",) and s.difficult.tolist() == [False]


def test_yolo_boxes_read_like_voc(tmp_path):
    _image(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("1 0.25 0.5 0.2 0.6\n7 0.5 0.5 0.1 0.1\n")
    samples, stats = boxdata.read_box_folder(tmp_path, ("cat", "dog"))
    np.testing.assert_allclose(samples[0].xyxy, [[30, 20, 70, 80]], atol=1e-4)
    assert samples[0].label.tolist() == [1] and stats["unmapped_boxes"] == 1


def test_bad_labels_are_clear_errors(tmp_path):
    _image(tmp_path / "a.jpg")
    (tmp_path / "a.xml").write_text(VOC.format(a="dog", b="cat"))
    with pytest.raises(UserError, match="none of the boxes"):
        boxdata.read_box_folder(tmp_path, ("hand",))
    (tmp_path / "a.xml").write_text("<annotation><object>")
    with pytest.raises(UserError, match="not valid VOC XML"):
        boxdata.read_box_folder(tmp_path, ("hand",))


def test_boxes_cut_by_a_crop_are_clipped_or_dropped_by_one_rule():
    boxes = np.float32([[-50, 10, 50, 30],  # half outside: clipped to x 0..50
                        [-90, 40, 10, 60],  # 10% inside: dropped
                        [90, 90, 99, 99]])  # inside: unchanged
    moved, kept = det.warp_boxes(boxes, np.float64([[1, 0, 0], [0, 1, 0]]), 100)
    assert kept.tolist() == [True, False, True]
    np.testing.assert_allclose(moved[[0, 2]], [[0, 10, 50, 30], [90, 90, 99, 99]])
    mirrored, _ = det.warp_boxes(boxes[2:], np.float64([[-1, 0, 100], [0, 1, 0]]), 100)
    np.testing.assert_allclose(mirrored, [[1, 90, 10, 99]])  # corners re-ordered after a mirror


@pytest.mark.parametrize("rot90", [0.0, 1.0])
def test_augmented_boxes_still_frame_the_object(rot90):
    """A bright rectangle on grey; after any augmentation (quarter turns too) the box must still cover it."""
    image = np.full((120, 200, 3), 60, np.uint8)
    image[30:70, 50:110] = 250
    config = types.SimpleNamespace(zoom=0.5, translate=0.2, hflip=True, color=0.0, grayscale=0.0, rot90=rot90)
    rng = np.random.default_rng(0)
    for _ in range(20):
        out, boxes, labels = det.augment_boxes(image, np.float32([[50, 30, 110, 70]]), np.int64([0]), 96, rng, config)
        assert out.shape == (96, 96, 3)
        for x0, y0, x1, y1 in boxes:
            inner = out[int(y0) + 2 : int(y1) - 2, int(x0) + 2 : int(x1) - 2]
            if inner.size:
                assert inner.mean() > 200, "the box left the rectangle"
            bright = (out > 200).all(axis=2)
            bright[max(int(y0) - 1, 0) : int(y1) + 2, max(int(x0) - 1, 0) : int(x1) + 2] = False
            assert bright.sum() <= 0.02 * (x1 - x0) * (y1 - y0), "part of the rectangle lies outside its box"


def test_letterbox_sample_moves_boxes_as_the_runtime_does():
    from edgevision.deploy.ops import fit_to_input

    image = np.zeros((100, 200, 3), np.uint8)
    out, boxes = det.letterbox_sample(image, np.float32([[0, 0, 200, 100]]), 64)
    _, placement = fit_to_input(image, (64, 64), "letterbox")
    np.testing.assert_allclose(boxes[0], [0, placement.pad_xy[1], 64, placement.pad_xy[1] + 32], atol=1e-4)
    assert out.shape == (64, 64, 3)


def test_targets_hand_computed_on_a_4x4_grid():
    # 64 px input, stride 16: cell centres at 8, 24, 40, 56. Box (16, 16)-(48, 40): centre (32, 28).
    t = det.encode_targets(np.float32([[16, 16, 48, 40]]), np.int64([1]), 64, 4, 2)
    pos = t[:, 5].reshape(4, 4)
    # Within 1.5 strides (< 24 px) of the centre: x 24, 40 and y 8, 24, 40; inside the box (y < 40): y 24.
    np.testing.assert_array_equal(pos, [[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    cell = 1 * 4 + 1  # centre (24, 24): l 8, t 8, r 24, b 16
    np.testing.assert_allclose(t[cell, :4] * 64, [8, 8, 24, 16])
    np.testing.assert_allclose(t[cell, 4], np.sqrt(8 / 24 * 8 / 16))
    assert t[cell, 6:].tolist() == [0, 1] and t[0].sum() == 0


def test_a_cell_claimed_by_two_boxes_goes_to_the_smaller_and_a_sub_stride_box_gets_none():
    # Big box: centre (32, 32), cells at 24 and 40 -> 4 cells; small box (16..40): only the cell at (24, 24).
    t = det.encode_targets(np.float32([[16, 16, 40, 40], [0, 0, 64, 64]]), np.int64([0, 1]), 64, 4, 2)
    assert t[1 * 4 + 1, 6:].tolist() == [1, 0]
    assert t[:, 5].sum() == 4 and t[:, 7].sum() == 3
    none = det.encode_targets(np.float32([[30, 30, 34, 34]]), np.int64([0]), 64, 4, 1)  # holds no cell centre
    assert none[:, 5].sum() == 0


def test_average_precision_all_point_interpolation_hand_computed():
    # Two true boxes; detections ranked: hit, miss, hit -> P/R (1, .5), (.5, .5), (.67, 1).
    # Envelope: 1.0 up to recall .5, then .667 up to 1 -> AP = .5 + .5 * 2/3.
    truth = boxdata.BoxSample(None, np.float32([[0, 0, 10, 10], [20, 20, 30, 30]]), np.int64([0, 0]),
                          np.array([False, False]), ("a", "a"))
    pred = Detections(("a",), np.float32([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]]),
                      np.float32([0.9, 0.8, 0.3]), np.int64([0, 0, 0]))
    m = det_task.detection_metrics([pred], [truth], ("a",), operating_score=0.5)
    assert m["map50"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert m["recall"] == 0.5 and m["precision"] == 0.5  # the two detections above 0.5: one hit, one miss


def test_duplicates_and_difficult_boxes_follow_voc_rules():
    truth = boxdata.BoxSample(None, np.float32([[0, 0, 10, 10], [20, 20, 30, 30]]), np.int64([0, 0]),
                          np.array([False, True]), ("a", "a"))
    pred = Detections(("a",), np.float32([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]]),
                      np.float32([0.9, 0.8, 0.7]), np.int64([0, 0, 0]))
    m = det_task.detection_metrics([pred], [truth], ("a",))
    # The duplicate is a false positive; the hit on the difficult box is ignored: P/R (1, 1), (.5, 1).
    assert m["map50"] == pytest.approx(1.0) and m["true_boxes"] == 1 and m["precision"] == 0.5


def test_rename_rules_are_checked_when_the_config_is_built():
    from edgevision.training.options import make_config

    with pytest.raises(UserError, match=r"detect\.rename rules"):
        make_config(dict(data=".", task="detect", det_classes=("hand",), det_rename=("*-hand:palm",)))


def test_a_mosaic_puts_four_photos_in_quadrants_and_their_boxes_with_them():
    image = np.full((120, 200, 3), 60, np.uint8)
    image[30:70, 50:110] = 250
    config = types.SimpleNamespace(zoom=0.0, translate=0.0, hflip=False, color=0.0, grayscale=0.0)
    out, boxes, labels = det.mosaic([image] * 4, [np.float32([[50, 30, 110, 70]])] * 4,
                                    [np.int64([k]) for k in range(4)], 96, np.random.default_rng(0), config)
    assert out.shape == (96, 96, 3) and labels.tolist() == [0, 1, 2, 3]
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        qx, qy = (k % 2) * 48, (k // 2) * 48  # box k lies in quadrant k, on its rectangle
        assert qx <= x0 < x1 <= qx + 48 and qy <= y0 < y1 <= qy + 48
        assert out[int(y0) + 1 : int(y1) - 1, int(x0) + 1 : int(x1) - 1].mean() > 200
        assert 10 < x1 - x0 < 20  # the 60 px wide rectangle at about a quarter of its size

"""Face boxes from 68 landmarks (landmark-boxes) and keypoint crops cut as a face chain cuts them
(crops --boxes landmarks): on a synthetic keypoint set whose points are drawn into the photos."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgevision.deploy.boxdata import read_box_folder
from edgevision.deploy.tasks.chain import crop, square_crop_box
from edgevision.training.crops import landmark_face_box, write_keypoint_crops, write_landmark_boxes


def _landmarks(cx: float, cy: float, r: float) -> np.ndarray:
    """68 points: jaw (0-16) on the lower half of a circle, brows (17-26) at cy - 0.4 r, the rest inside."""
    pts = np.zeros((68, 2), np.float32)
    t = np.linspace(np.pi, 0, 17)
    pts[:17] = np.stack([cx + r * np.cos(t), cy + r * np.abs(np.sin(t)) * 0.5 + r * 0.5 * (np.sin(t) > 0.99)], 1)
    pts[:17, 1] = cy + r * np.sin(np.linspace(0, np.pi, 17)) * 0.9  # chin at cy + 0.9 r
    pts[:17, 0] = cx + r * np.cos(np.linspace(np.pi, 0, 17))
    pts[17:27] = np.stack([np.linspace(cx - 0.8 * r, cx + 0.8 * r, 10), np.full(10, cy - 0.4 * r)], 1)
    pts[27:] = np.stack([np.full(41, cx), np.linspace(cy - 0.3 * r, cy + 0.6 * r, 41)], 1)
    return pts


def _keypoint_set(root: Path, n: int = 4) -> dict[str, np.ndarray]:
    """root/{train,val}/images/*.png with a white dot at each photo's nose, labels.csv and landmarks68.csv."""
    rng = np.random.default_rng(0)
    truth = {}
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        labels, marks = [["file", "nose_x", "nose_y"]], [["file", *(f"{a}{i}" for i in range(68) for a in "xy")]]
        for i in range(n):
            h, w = int(rng.integers(120, 200)), int(rng.integers(120, 200))
            r = float(rng.uniform(20, 40))
            cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
            pts = _landmarks(cx, cy, r)
            nose = np.float32([round(cx), round(cy)])
            image = np.zeros((h, w, 3), np.uint8)
            image[int(nose[1]) - 3 : int(nose[1]) + 4, int(nose[0]) - 3 : int(nose[0]) + 4] = 255
            name = f"p{i}.png"
            cv2.imwrite(str(root / split / "images" / name), image)
            labels.append([name, *map(str, nose)])
            marks.append([name, *(f"{v:.2f}" for v in pts.reshape(-1))])
            truth[f"{split}/{name}"] = nose
        for table, rows in (("labels.csv", labels), ("landmarks68.csv", marks)):
            with (root / split / table).open("w", newline="") as f:
                csv.writer(f).writerows(rows)
    return truth


def test_the_face_box_spans_the_jaw_and_starts_above_the_brows():
    pts = _landmarks(100, 100, 40)
    box = landmark_face_box(pts, (300, 300))
    brow, chin = 100 - 0.4 * 40, 100 + 0.9 * 40
    np.testing.assert_allclose(box, [60, brow - 0.15 * (chin - brow), 140, chin], atol=0.01)
    np.testing.assert_allclose(landmark_face_box(pts, (120, 130)), [60, box[1], 130, 120], atol=0.01)  # clipped
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        landmark_face_box(pts[:5], (300, 300))


def test_landmark_boxes_writes_a_voc_box_set_the_detector_reads(tmp_path):
    _keypoint_set(tmp_path / "kp")
    counts = write_landmark_boxes(tmp_path / "kp", tmp_path / "boxes", log=lambda _: None)
    assert counts == {"train": 4, "val": 4}
    samples = read_box_folder(tmp_path / "boxes" / "val", ("face",), ())[0]
    assert len(samples) == 4 and all(s.xyxy.shape == (1, 4) for s in samples)
    proc = subprocess.run([sys.executable, "-m", "edgevision", "landmark-boxes", str(tmp_path / "kp"),
                           str(tmp_path / "boxes")], capture_output=True, text=True)
    assert proc.returncode != 0 and "not empty" in proc.stderr and "Traceback" not in proc.stderr


def test_keypoint_crops_move_every_point_into_the_crop(tmp_path):
    truth = _keypoint_set(tmp_path / "kp")
    counts = write_keypoint_crops(tmp_path / "kp", tmp_path / "crops", margin=0.25, jitter=2, size=64,
                                  log=lambda _: None)
    assert counts == {"train": 12, "val": 4}  # each training face three times (one plain, two jittered)
    for split in ("train", "val"):
        rows = list(csv.reader((tmp_path / "crops" / split / "labels.csv").open()))
        assert rows[0] == ["file", "nose_x", "nose_y"]
        marks = list(csv.reader((tmp_path / "crops" / split / "landmarks68.csv").open()))
        assert len(marks) == len(rows) and all(len(r) == 137 for r in marks)
        for name, x, y in rows[1:]:
            patch = cv2.imread(str(tmp_path / "crops" / split / "images" / name), cv2.IMREAD_GRAYSCALE)
            assert patch.shape == (64, 64)
            ys, xs = np.nonzero(patch > 200)  # the dot (7 px), shrunk with the crop; the grey fill is 114
            assert abs(xs.mean() - float(x)) < 1.5 and abs(ys.mean() - float(y)) < 1.5, name
    # the val crop is the chain's crop: square_crop_box of the face box with the same margin
    rows = list(csv.reader((tmp_path / "crops" / "val" / "labels.csv").open()))[1:]
    marks = {r[0]: np.float32(r[1:]).reshape(68, 2) for r in list(csv.reader(
        (tmp_path / "kp" / "val" / "landmarks68.csv").open()))[1:]}
    image = cv2.imread(str(tmp_path / "kp" / "val" / "images" / "p0.png"))
    square = square_crop_box(landmark_face_box(marks["p0.png"], image.shape[:2]), 0.25)[0]
    side = crop(image, square).shape[1]
    nose = (truth["val/p0.png"] - np.round(square[:2])) * 64 / side
    np.testing.assert_allclose(np.float32(rows[0][1:]), nose, atol=0.01)

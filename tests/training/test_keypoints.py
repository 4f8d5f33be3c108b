import csv

import cv2
import numpy as np
import pytest
from conftest import AugConfig as Aug
from edgevision.deploy.errors import UserError
from edgevision.deploy.tasks.keypoints import keypoint_metrics
from edgevision.training.keypoints import (
    augment_sample,
    find_point_dataset,
    flip_partner,
    load_resized,
)


def dot_image(size, points, colours):
    image = np.zeros((size, size, 3), np.uint8)
    for (x, y), colour in zip(points, colours):
        cv2.circle(image, (int(round(x)), int(round(y))), 3, colour, -1)
    return image


def centroid(image, colour):
    mask = np.all(np.abs(image.astype(int) - colour) < 60, axis=2)
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_augmentation_moves_the_labels_with_the_image_and_swaps_left_and_right_on_a_mirror():
    names = ("left_eye", "right_eye", "nose")
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    points = np.array([[40, 40], [80, 42], [60, 70]], np.float32)
    image = dot_image(128, points, colours)
    partner = flip_partner(names)
    assert partner.tolist() == [1, 0, 2]
    rng = np.random.default_rng(0)
    mirrored = 0
    for _ in range(40):
        out, moved = augment_sample(image, points, rng, Aug(rotation_deg=25.0, zoom=0.25, translate=0.15), partner)
        found = [centroid(out, c) for c in colours]
        if np.linalg.norm(found[0] - moved[1]) < np.linalg.norm(found[0] - moved[0]):
            mirrored += 1  # the blue dot (once left_eye) is now labelled right_eye
            found = [found[1], found[0], found[2]]
        for f, m in zip(found, moved):
            assert np.linalg.norm(f - m) < 1.5
        assert ((moved >= 0) & (moved <= 127)).all()
    assert 5 < mirrored < 35  # about half the copies were mirrored


def write_set(folder, rows, size=(60, 80), with_landmarks=False):
    (folder / "images").mkdir(parents=True)
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "nose_x", "nose_y"])
        for i, (x, y) in enumerate(rows):
            cv2.imwrite(str(folder / "images" / f"{i}.jpg"), np.zeros((*size, 3), np.uint8))
            w.writerow([f"{i}.jpg", x, y])
    if with_landmarks:
        with open(folder / "landmarks68.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file"] + [f"{a}{i}" for i in range(68) for a in "xy"])
            for i in range(len(rows)):
                lm = np.zeros((68, 2))
                lm[36], lm[45] = (10, 20), (40, 20)  # outer eye corners 30 px apart
                lm[36:42] += 0
                w.writerow([f"{i}.jpg"] + lm.ravel().tolist())


def test_point_data_reads_labels_and_normalises_by_the_outer_eye_corners(tmp_path):
    write_set(tmp_path / "train", [(10, 20), (30, 40)], with_landmarks=True)
    write_set(tmp_path / "val", [(5, 6)], with_landmarks=True)
    train, val = find_point_dataset(tmp_path, ("nose",), 0.2, 0)
    assert train.points.shape == (2, 1, 2) and val.points[0, 0].tolist() == [5, 6]
    assert train.norm_kind == "inter-ocular" and train.norm.tolist() == [30.0, 30.0]
    eyes, _ = find_point_dataset(tmp_path, ("nose", "right_eye", "ibug45"), 0.2, 0)
    assert eyes.points.shape == (2, 3, 2)  # right_eye and ibug45 from the 68 landmarks
    assert eyes.points[0, 2].tolist() == [40.0, 20.0]
    with pytest.raises(UserError, match="numbers its points 0..67"):
        find_point_dataset(tmp_path, ("ibug70",), 0.2, 0)


def test_without_eye_corners_the_metric_uses_the_diagonal_and_a_seeded_split(tmp_path):
    write_set(tmp_path, [(i, i) for i in range(10)])
    train, val = find_point_dataset(tmp_path, ("nose",), 0.2, 0)
    assert len(train.paths) == 8 and len(val.paths) == 2 and train.norm_kind == "diagonal"
    assert train.norm[0] == pytest.approx(100.0)  # 60 x 80 image
    resized = load_resized(train, 40)
    assert resized.images.shape == (8, 40, 40, 3)
    np.testing.assert_allclose(resized.points[:, 0] / resized.scale_xy, train.points[:, 0], atol=1e-4)


def test_missing_labels_and_names_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="has no labels.csv"):
        find_point_dataset(tmp_path, ("nose",), 0.2, 0)
    write_set(tmp_path, [(1, 1)] * 6)
    with pytest.raises(UserError, match="no chin_x/chin_y"):
        find_point_dataset(tmp_path, ("chin",), 0.2, 0)


def test_keypoint_metrics_hand_computed():
    pred = np.array([[[3.0, 4.0]], [[0.0, 0.0]]])
    true = np.zeros((2, 1, 2))
    m = keypoint_metrics(pred, true, np.array([10.0, 10.0]), ("nose",), "inter-ocular")
    assert m["nme_mean"] == pytest.approx(0.25) and m["nme_median"] == pytest.approx(0.25)
    assert m["nme_share_below_0.1"] == 0.5 and m["pixel_error_mean"] == pytest.approx(2.5)


def test_a_labels_csv_saved_with_a_bom_trains(tmp_path):
    """Excel writes a UTF-8 BOM: it must not become part of the first column's name ('\\ufefffile')."""
    write_set(tmp_path, [(i, i) for i in range(10)])
    table = tmp_path / "labels.csv"
    table.write_bytes(b"\xef\xbb\xbf" + table.read_bytes())
    train, val = find_point_dataset(tmp_path, ("nose",), 0.2, 0)
    assert len(train.paths) + len(val.paths) == 10

"""The memory benchmark's synthetic folders are read by each task's own loader, labels where the
square was drawn (a benchmark on a folder its trainer misreads would measure nothing)."""

import cv2
import numpy as np
import pytest
from edgevision.deploy.boxdata import find_box_dataset
from edgevision.training.bench_memory import make_folder
from edgevision.training.data import find_dataset
from edgevision.training.keypoints import find_point_dataset
from edgevision.training.segmentation import find_seg_dataset


def square_centre(path) -> np.ndarray:
    """Centre of the 41x41 flat square drawn on the noise: the window whose pixels vary least."""
    image = cv2.imread(str(path)).astype(np.float32)
    var = sum(cv2.blur(c * c, (41, 41)) - cv2.blur(c, (41, 41)) ** 2 for c in cv2.split(image))
    y, x = np.unravel_index(np.argmin(var[20:-20, 20:-20]), var[20:-20, 20:-20].shape)
    return np.float32([x + 20 + 0.5, y + 20 + 0.5])


def test_classify_folder_has_four_balanced_classes(tmp_path):
    data = find_dataset(make_folder(tmp_path / "c", 16), 0.25, 0)
    assert data.classes == ("blue", "green", "grey", "red")
    assert len(data.train.paths) + len(data.val.paths) == 16


def test_keypoints_folder_labels_the_square_centre(tmp_path):
    train, val = find_point_dataset(make_folder(tmp_path / "k", 10, task="keypoints"), ("dot",), 0.2, 0,
                                    diagonals=False)
    assert len(train.paths) + len(val.paths) == 10
    for path, point in zip(train.paths, train.points[:, 0]):
        assert np.allclose(point, square_centre(path), atol=2.5)


def test_segment_folder_masks_the_square(tmp_path):
    train, val = find_seg_dataset(make_folder(tmp_path / "s", 10, task="segment"), {}, 0.2, 0)
    assert len(train.images) + len(val.images) == 10
    for i, path in enumerate(train.images):
        mask = train.masks[i]
        ys, xs = np.nonzero(mask)
        assert mask.shape == (120, 160) and len(xs) == 41 * 41
        assert np.allclose([xs.mean() + 0.5, ys.mean() + 0.5], square_centre(path), atol=2.5)


def test_detect_folder_boxes_the_square(tmp_path):
    train, val, _ = find_box_dataset(make_folder(tmp_path / "d", 10, task="detect"), ("box",), (), 0.2, 0)
    assert len(train) + len(val) == 10
    for sample in train:
        (x0, y0, x1, y1), = sample.xyxy
        assert x1 - x0 == pytest.approx(41, abs=1) and y1 - y0 == pytest.approx(41, abs=1)
        assert np.allclose([(x0 + x1) / 2, (y0 + y1) / 2], square_centre(sample.path), atol=2.5)


def test_rss_reads_the_resident_and_the_anonymous_memory_of_a_process():
    import os

    from edgevision.training.bench_memory import rss_mb

    before = rss_mb(os.getpid())
    block = np.ones(64 << 20, np.uint8)  # 64 MB written: anonymous pages
    rss, anon = rss_mb(os.getpid())
    assert 0 < anon <= rss and anon - before[1] > 60 and block[-1] == 1
    assert rss_mb(2**22 + 7) is None  # no such process


def test_a_folder_made_for_another_task_or_by_someone_else_is_refused_not_mixed(tmp_path, capsys):
    from edgevision.training.bench_memory import MARKER, main

    theirs = tmp_path / "photos"
    (theirs / "cats").mkdir(parents=True)
    (theirs / "cats" / "a.jpg").write_bytes(b"mine")
    with pytest.raises(SystemExit, match="is not empty and was not made by this benchmark for --task detect"):
        main(["--task", "detect", "--images", "8", "--folder", str(theirs)])
    assert sorted(p.name for p in theirs.rglob("*")) == ["a.jpg", "cats"]  # nothing written there
    (theirs / MARKER).write_text("classify 8\n")  # one the benchmark made for classify
    with pytest.raises(SystemExit, match="not made by this benchmark for --task keypoints"):
        main(["--task", "keypoints", "--images", "8", "--folder", str(theirs)])

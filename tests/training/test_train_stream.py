"""The keypoint, segmentation and detection streams (training/stream.py with each task's loader):
they give the in-memory loaders' samples, their streamed validation metrics equal the runtime's
own path image by image, and a bad label stops the scan in one line."""

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")
pytestmark = pytest.mark.train

from edgevision.deploy import ops as rt_ops
from edgevision.deploy.boxdata import find_box_dataset
from edgevision.deploy.errors import UserError
from edgevision.deploy.images import read_image
from edgevision.deploy.spec import TaskSpec
from edgevision.deploy.tasks import detect as detect_task
from edgevision.deploy.tasks import segment as segment_task
from edgevision.deploy.tasks.detect import detection_metrics
from edgevision.deploy.tasks.keypoints import keypoint_metrics
from edgevision.deploy.tasks.segment import iou_metrics
from edgevision.training import keypoints as kp
from edgevision.training import segmentation as seg
from edgevision.training.detection import val_source
from edgevision.training.stream import open_samples
from edgevision.training.tasks import detect, keypoints, segment
from taskdata import blobs, dot_dataset, rectangles


def quiet(_):
    pass


def resize_some(folder, factor=1.5):
    """Every third image a different size, so that resize factors differ between images."""
    for i, path in enumerate(sorted(folder.glob("*.png"))):
        if i % 3 == 0:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(path), cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST))


def test_keypoint_and_mask_streams_give_the_in_memory_loaders_samples(tmp_path):
    dot_dataset(tmp_path / "dots", n=8)
    points, _ = kp.find_point_dataset(tmp_path / "dots", ("dot",), 0.2, 0)
    spec = TaskSpec(kind="keypoints", input_hw=(40, 40), labels=("dot",))
    stream = open_samples(kp.point_source(points, spec, "t"), "", 0, False, quiet)
    got = list(stream.batches(3).as_numpy_iterator())
    memory = kp.load_resized(points, 40)
    assert np.array_equal(np.concatenate([b[0] for b in got]), memory.images)
    assert np.array_equal(np.concatenate([b[1] for b in got]), memory.points)
    np.testing.assert_array_equal(stream.info[0][:, 0:2].astype(np.float32), memory.scale_xy)

    blobs(tmp_path / "blobs", n=6)
    data, _ = seg.find_seg_dataset(tmp_path / "blobs", {0: 1}, 0.2, 0)
    spec = TaskSpec(kind="segment", input_hw=(32, 32), labels=("background", "person"))
    stream = open_samples(seg.seg_source(data, spec, "s"), "", 0, False, quiet)
    got = list(stream.batches(2).as_numpy_iterator())
    memory_images, memory_masks = seg.load_resized(data, 32)
    assert np.array_equal(np.concatenate([b[0] for b in got]), memory_images)
    assert np.array_equal(np.concatenate([b[1] for b in got]), memory_masks)
    np.testing.assert_allclose(stream.info[0], [(m > 0).mean() for m in data.masks], rtol=1e-6)


def test_streamed_keypoint_metrics_equal_the_image_by_image_runtime_path(tmp_path):
    dot_dataset(tmp_path / "dots", n=10)
    resize_some(tmp_path / "dots" / "images")
    _, val = kp.find_point_dataset(tmp_path / "dots", ("dot",), 0.5, 0, diagonals=False)
    val.paths[1].write_bytes(b"broken")  # skipped by the scan
    spec = TaskSpec(kind="keypoints", input_hw=(32, 32), labels=("dot",))
    val_s = open_samples(kp.point_source(val, spec, "v"), "", 0, False, quiet)
    model = keypoints.build_keypoint_model(1, 32, 1.0, "none", 0.0, "heatmap", "tiny")[0]
    kept = keypoints.readable_points(val, val_s)
    got = keypoints.evaluate_points(model, val_s, kept, ("dot",))

    ok = [read_image(p) is not None for p in val.paths]
    reference = kp.find_point_dataset(tmp_path / "dots", ("dot",), 0.5, 0)[1]  # diagonals read from the files
    truth = kp.subset(reference, np.array(ok))
    pred = []
    for path in truth.paths:
        batch, (placement,) = rt_ops.preprocess([read_image(path)], spec)
        pred.append(placement.to_source(np.asarray(model(batch))[0] * 32))
    expected = keypoint_metrics(np.stack(pred), truth.points, truth.norm, ("dot",), truth.norm_kind)
    assert not all(ok) and got["images"] == expected["images"] == sum(ok)
    for key in ("nme_mean", "nme_median", "pixel_error_mean", "pixel_error_median"):
        assert got[key] == pytest.approx(expected[key], rel=1e-5), key


def test_streamed_segmentation_and_detection_metrics_equal_the_image_by_image_runtime_path(tmp_path):
    blobs(tmp_path / "blobs", n=9)
    resize_some(tmp_path / "blobs" / "images")  # masks keep their size only where the image does
    for path in sorted((tmp_path / "blobs" / "masks").glob("*.png"))[::3]:
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(path), cv2.resize(mask, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_NEAREST))
    _, val = seg.find_seg_dataset(tmp_path / "blobs", {0: 1}, 0.5, 0)
    spec = TaskSpec(kind="segment", input_hw=(32, 32), labels=("background", "person"))
    val_s = open_samples(seg.seg_source(val, spec, "v"), "", 0, False, quiet)
    model, _ = segment.build_segmenter(2, 32, 1.0, "none", 0.0, "tiny", "unet")
    got = segment.evaluate_masks(model, val_s, val, spec)
    maps = []
    for path in val.images:
        batch, placements = rt_ops.preprocess([read_image(path)], spec)
        maps.append(segment_task.decode([np.asarray(model(batch))], spec, placements)[0].class_map)
    expected = iou_metrics(maps, list(val.masks), spec.labels)
    assert got["images"] == expected["images"] == len(val.images)
    for key in ("miou", "per_image_miou"):
        assert got[key] == pytest.approx(expected[key], rel=1e-9), key
    assert got["iou"] == pytest.approx(expected["iou"], rel=1e-9)

    rectangles(tmp_path / "rects" / "val", 7, seed=1, hw=(72, 96))
    second = ("<object><name>box</name><bndbox><xmin>3</xmin><ymin>3</ymin><xmax>20</xmax><ymax>24</ymax></bndbox>"
              "</object></annotation>")
    for xml in sorted((tmp_path / "rects" / "val").glob("*.xml"))[::2]:  # two boxes on some photos
        xml.write_text(xml.read_text().replace("</annotation>", second))
    rectangles(tmp_path / "rects" / "train", 5, seed=2, hw=(60, 40))
    _, samples, _ = find_box_dataset(tmp_path / "rects", ("box",), (), 0.2, 0)
    samples = samples + find_box_dataset(tmp_path / "rects" / "train", ("box",), (), 0.2, 0)[0]  # other shapes
    spec = TaskSpec(kind="detect", input_hw=(64, 64), labels=("box",), resize="letterbox")
    val_s = open_samples(val_source(samples, spec, "v"), "", 0, False, quiet)
    deploy, _, _ = detect.build_detector(1, 64, 1.0, "none", "tiny")
    assert {len(s.label) for s in samples} == {1, 2}
    got = detection_metrics(detect.predict_val(deploy, val_s, spec), samples, spec.labels)
    preds = []
    for s in samples:
        batch, placements = rt_ops.preprocess([read_image(s.path)], spec)
        outputs = [np.asarray(o) for o in deploy(batch)]
        preds.append(detect_task.decode(outputs, spec, placements, score_threshold=0.01)[0])
    expected = detection_metrics(preds, samples, spec.labels)
    assert got["images"] == expected["images"] == len(samples)
    for key in ("map50", "recall", "precision", "true_boxes"):
        assert got[key] == pytest.approx(expected[key], rel=1e-6), key


def test_a_mask_that_is_not_class_ids_stops_the_scan_in_one_line_and_leaves_no_cache(tmp_path):
    blobs(tmp_path / "blobs", n=4)
    cv2.imwrite(str(tmp_path / "blobs" / "masks" / "2.png"), np.zeros((48, 72, 3), np.uint8))
    data = seg.read_seg_folder(tmp_path / "blobs", {0: 1})
    spec = TaskSpec(kind="segment", input_hw=(32, 32), labels=("background", "person"))
    with pytest.raises(UserError, match=r"masks/2.png is not a single-channel mask of class ids"):
        open_samples(seg.seg_source(data, spec, "segment-train"), str(tmp_path / "cache"), 0, True, quiet)
    assert not list((tmp_path / "cache").iterdir())

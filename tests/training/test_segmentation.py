
import json

import cv2
import numpy as np
import pytest
from conftest import AugConfig as Aug
from edgevision.deploy.errors import UserError
from edgevision.deploy.tasks.segment import iou_metrics
from edgevision.training import segmentation as seg
from edgevision.training.segmentation import (
    augment_pair,
    find_seg_dataset,
    load_resized,
    yolo_polygons_to_mask,
)


def test_yolo_polygons_are_rasterised_for_the_classes_asked_for():
    text = "0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n2 0.6 0.6 0.9 0.6 0.9 0.9\n0 0.1 0.2\n"
    mask = yolo_polygons_to_mask(text, (100, 200), {0: 1})
    assert mask.dtype == np.uint8 and mask.shape == (100, 200)
    assert mask[30, 60] == 1 and mask[80, 150] == 0  # class 2 is not asked for; a 1-point line is skipped
    assert abs(int(mask.sum()) - 40 * 80) < 300  # the square covers x 20..100, y 10..50


def write_set(folder, n, size=(60, 80), yolo=False):
    (folder / "images").mkdir(parents=True)
    (folder / ("labels" if yolo else "masks")).mkdir()
    for i in range(n):
        image = np.zeros((*size, 3), np.uint8)
        image[10:30, 20:50] = 255
        cv2.imwrite(str(folder / "images" / f"{i}.png"), image)
        if yolo:
            (folder / "labels" / f"{i}.txt").write_text("0 0.25 0.1667 0.625 0.1667 0.625 0.5 0.25 0.5\n")
        else:
            mask = (image[..., 0] > 0).astype(np.uint8)
            cv2.imwrite(str(folder / "masks" / f"{i}.png"), mask)


@pytest.mark.parametrize("yolo", [False, True])
def test_masks_and_yolo_labels_read_alike_with_a_seeded_split(tmp_path, yolo):
    write_set(tmp_path, 10, yolo=yolo)
    train, val = find_seg_dataset(tmp_path, {0: 1}, 0.2, 0)
    assert len(train.images) == 8 and len(val.images) == 2
    assert train.masks[0].shape == (60, 80) and train.masks[0][20, 30] == 1 and train.masks[0][50, 5] == 0
    images, masks = load_resized(train, 32)
    assert images.shape == (8, 32, 32, 3) and masks.shape == (8, 32, 32) and set(np.unique(masks)) == {0, 1}


def test_a_folder_without_labels_is_a_clear_error(tmp_path):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UserError, match="no labelled images"):
        find_seg_dataset(tmp_path, {0: 1}, 0.2, 0)


def test_augmentation_moves_the_mask_with_the_image():
    image = np.zeros((64, 64, 3), np.uint8)
    image[20:40, 10:30] = 255
    mask = (image[..., 0] > 0).astype(np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(20):
        out, out_mask = augment_pair(image, mask, rng, Aug())
        agree = ((out[..., 0] > 127) == (out_mask == 1)).mean()
        assert agree > 0.97  # only edge pixels may differ (bilinear image, nearest mask)


def test_iou_metrics_hand_computed():
    true = [np.array([[0, 1], [1, 1]], np.uint8)]
    pred = [np.array([[0, 1], [0, 1]], np.uint8)]
    m = iou_metrics(pred, true, ("bg", "fg"))
    assert m["iou"]["fg"] == pytest.approx(2 / 3) and m["iou"]["bg"] == pytest.approx(1 / 2)
    assert m["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    with pytest.raises(ValueError, match="differ in size"):
        iou_metrics([np.zeros((2, 3), np.uint8)], true, ("bg", "fg"))


def test_coco_rle_decodes_like_pycocotools():
    # Strings written by pycocotools.mask.encode for the masks built here (checked once, by hand).
    small = np.zeros((6, 5), np.uint8)
    small[1:4, 2:4] = 1
    assert (seg.rle_decode("=3305", (6, 5)) == small).all()
    holed = np.zeros((40, 50), np.uint8)
    holed[5:30, 10:45] = 1
    holed[12:20, 20:30] = 0
    text = "e<i0?000000000000000000^OI37MI37MI37MI37MI37MI37MI37MI37MI37MI37?0000000000000000000000000000S6"
    assert (seg.rle_decode(text, (40, 50)) == holed).all()
    column_major = np.zeros(30, np.uint8)
    column_major[7:10] = 1  # 7 zeros, 3 ones, counted down the columns
    assert (seg.rle_decode([7, 3, 20], (6, 5)) == column_major.reshape(5, 6).T).all()


def test_coco_polygons_and_rle_become_masks_of_the_named_classes(tmp_path):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((6, 5, 3), np.uint8))
    coco = {
        "images": [{"id": 7, "file_name": "a.jpg", "height": 6, "width": 5}],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"image_id": 7, "category_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]},
            {"image_id": 7, "category_id": 3, "segmentation": {"counts": "=3305", "size": [6, 5]}},
        ],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    data = seg.read_seg_folder(tmp_path, {}, ("background", "person"))
    mask = data.masks[0]
    assert mask[:3, :3].min() == 1 and mask.sum() == 9  # the car is not a class here: background
    with pytest.raises(UserError, match="none of the classes"):
        seg.read_seg_folder(tmp_path, {}, ("background", "dog"))


def test_object_crop_frames_one_object_larger_than_the_whole_photo_does():
    from edgevision.training.segmentation import object_crop

    image = np.zeros((400, 600, 3), np.uint8)
    mask = np.zeros((400, 600), np.uint8)
    mask[300:360, 500:540] = 1  # a small person in a corner of a wide scene
    image[mask > 0] = 255
    rng = np.random.default_rng(0)
    shares = []
    for _ in range(20):
        out, out_mask = object_crop(image, mask, rng, 64)
        assert out.shape == (64, 64, 3) and out_mask.shape == (64, 64)
        assert ((out[..., 0] > 127) == (out_mask > 0)).mean() > 0.95  # image and mask moved together
        shares.append((out_mask > 0).mean())
    assert min(shares) > 0.05 > (mask > 0).mean() * 2  # far more of the view is the object
    out, out_mask = object_crop(image, np.zeros_like(mask), rng, 64)  # no object: the whole photo
    assert out_mask.sum() == 0 and out.shape == (64, 64, 3)


def test_lowres_augmentation_blurs_fine_detail():
    from edgevision.training.keypoints import color_jitter

    image = np.zeros((128, 128, 3), np.uint8)
    image[::2] = 255  # one-pixel stripes
    rng = np.random.default_rng(0)
    assert np.array_equal(color_jitter(image, rng, 0.0, 0.0, 0.0), image)
    blurred = color_jitter(image, rng, 0.0, 0.0, 1.0)
    assert blurred.std() < 0.5 * image.std()

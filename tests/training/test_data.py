import cv2
import numpy as np
import pytest
from edgevision.deploy.errors import UserError
from edgevision.training.data import find_dataset, load_images, stratified_split


def make_tree(root, layout):
    for rel, count in layout.items():
        folder = root / rel
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(folder / f"{i}.jpg"), np.full((20, 30, 3), 40 * i % 255, np.uint8))
    return root


def test_folder_per_class_gets_a_seeded_stratified_split(tmp_path):
    make_tree(tmp_path, {"cat": 10, "dog": 5})
    ds = find_dataset(tmp_path, val_split=0.2, seed=1)
    assert ds.classes == ("cat", "dog") and not ds.split_given
    assert np.bincount(ds.val.labels).tolist() == [2, 1]
    assert np.bincount(ds.train.labels).tolist() == [8, 4]
    assert not set(ds.train.paths) & set(ds.val.paths)
    assert find_dataset(tmp_path, 0.2, seed=1).val.paths == ds.val.paths  # same seed, same split


def test_given_train_and_val_folders_are_used_as_they_are(tmp_path):
    make_tree(tmp_path, {"train/a": 3, "train/b": 4, "val/a": 1, "val/b": 2})
    ds = find_dataset(tmp_path)
    assert ds.split_given and len(ds.train.paths) == 7 and len(ds.val.paths) == 3


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "has no class folders"),
        ({"only": 3}, "has only one class"),
        ({"a": 3, "b": 0}, "has no images"),
        ({"train/a": 2, "train/b": 2, "val/a": 1, "val/c": 1}, "name different classes"),
    ],
)
def test_bad_datasets_fail_with_one_clear_line(tmp_path, layout, message):
    make_tree(tmp_path, layout)
    with pytest.raises(UserError, match=message):
        find_dataset(tmp_path)


def test_a_missing_data_folder_is_named(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        find_dataset(tmp_path / "nope")


def test_unreadable_images_are_skipped_and_returned(tmp_path):
    make_tree(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "broken.jpg").write_bytes(b"junk")
    ds = find_dataset(tmp_path, val_split=0.3)
    images, labels, skipped = load_images(ds.train, 16)
    all_images = len(ds.train.paths)
    assert images.shape[1:] == (16, 16, 3) and images.dtype == np.uint8
    assert len(images) + len(skipped) == all_images and len(labels) == len(images)
    assert [p.name for p in skipped] in ([], ["broken.jpg"])


def test_stratified_split_needs_two_images_per_class():
    with pytest.raises(UserError, match="only 1 image"):
        stratified_split(np.array([0, 0, 1]), 0.2, 0)


def test_a_class_with_one_image_is_named_when_a_split_is_needed(tmp_path):
    make_tree(tmp_path, {"cat": 3, "dog": 1})
    with pytest.raises(UserError, match="dog has only one image"):
        find_dataset(tmp_path)

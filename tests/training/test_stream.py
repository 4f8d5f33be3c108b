"""training/stream.py: the tf.data pipeline gives the in-memory loader's images, and its cache is
written once and read by the next run."""

import os

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")

from edgevision.deploy.errors import UserError
from edgevision.training import stream as stream_module
from edgevision.training.data import find_dataset, load_images
from edgevision.training.stream import open_split


def photo_tree(root, per_class=7):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 255, (30 + i, 50, 3), dtype=np.uint8)
            cv2.imwrite(str(root / label / f"{i}.{'png' if i % 2 else 'jpg'}"), image)
    (root / "dog" / "broken.jpg").write_bytes(b"not a photo")
    return root


def streamed(stream, batch=3):
    parts = list(stream.images(batch).as_numpy_iterator())
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def test_the_stream_yields_the_same_images_and_labels_as_the_in_memory_loader(tmp_path):
    ds = find_dataset(photo_tree(tmp_path / "data"), val_split=0.3, seed=2)
    for split in (ds.train, ds.val):
        images, labels, skipped = load_images(split, 24)
        stream = open_split(split, 24, "train", "", 0, True, lambda _: None)
        got_images, got_labels = streamed(stream)
        assert got_images.dtype == np.uint8 and np.array_equal(got_images, images)
        assert np.array_equal(got_labels, labels) and np.array_equal(stream.labels, labels)
        assert stream.skipped == skipped and stream.count == len(images)
    assert [p.name for p in open_split(ds.train, 24, "t", "", 0, True, lambda _: None).skipped +
            open_split(ds.val, 24, "v", "", 0, True, lambda _: None).skipped] == ["broken.jpg"]


def test_every_epoch_of_the_shuffled_stream_holds_each_readable_image_once(tmp_path):
    ds = find_dataset(photo_tree(tmp_path / "data"), val_split=0.3, seed=2)
    stream = open_split(ds.train, 16, "train", "", 0, True, lambda _: None)
    batches = stream.shuffled(4, seed=1)
    first, second = ([label for _, y in batches.as_numpy_iterator() for label in y] for _ in range(2))
    assert sorted(first) == sorted(second) == sorted(stream.labels.tolist())
    assert len(first) == stream.count


def test_the_cache_is_written_by_one_run_and_read_by_the_next(tmp_path, monkeypatch):
    ds = find_dataset(photo_tree(tmp_path / "data"), val_split=0.3, seed=2)
    cache, log = tmp_path / "cache", []
    first = open_split(ds.train, 24, "train", str(cache), 5, True, log.append)
    assert "writing an image cache" in log[-1] and list(cache.glob("train-24px-*.index"))
    images, labels, _ = load_images(ds.train, 24)
    kept_order = [i for i in first.order if first.readable[i]]  # the cache holds a seeded random order
    position = {i: n for n, i in enumerate(np.flatnonzero(first.readable))}
    expected = images[[position[i] for i in kept_order]]

    calls = []
    real = stream_module.decode_for_training
    monkeypatch.setattr(stream_module, "decode_for_training", lambda *a: calls.append(a) or real(*a))
    second = open_split(ds.train, 24, "train", str(cache), 5, True, log.append)
    assert "reading the image cache" in log[-1]
    got, got_labels = streamed(second)
    assert not calls  # no file was decoded: every image came from the cache
    assert np.array_equal(got, expected) and np.array_equal(got_labels, labels[[position[i] for i in kept_order]])
    assert second.skipped == first.skipped


def test_a_changed_file_or_input_size_makes_a_new_cache(tmp_path):
    ds = find_dataset(photo_tree(tmp_path / "data"), val_split=0.3, seed=2)
    cache, log = tmp_path / "cache", []
    open_split(ds.val, 24, "val", str(cache), 0, False, log.append)
    stat = ds.val.paths[0].stat()
    os.utime(ds.val.paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    open_split(ds.val, 24, "val", str(cache), 0, False, log.append)
    open_split(ds.val, 32, "val", str(cache), 0, False, log.append)
    assert all("writing an image cache" in line for line in log) and len(list(cache.glob("*.index"))) == 3


def test_a_split_with_no_readable_image_is_one_clear_error(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(2):
            (tmp_path / label / f"{i}.jpg").write_bytes(b"junk")
    ds = find_dataset(tmp_path, val_split=0.5)
    with pytest.raises(UserError, match="none of the 2 images could be read"):
        open_split(ds.train, 16, "train", "", 0, True, lambda _: None)

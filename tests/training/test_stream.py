"""training/stream.py: the tf.data pipeline gives the in-memory loader's images, and its cache is
written once and read by the next run."""

import math
import os

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")

from edgevision.deploy.errors import UserError
from edgevision.training import stream as stream_module
from edgevision.training.data import find_dataset, load_images
from edgevision.training.stream import NumpyMap, even_count, open_split


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


def test_every_epoch_holds_each_readable_image_once_in_its_own_order_the_same_in_every_run(tmp_path):
    ds = find_dataset(photo_tree(tmp_path / "data"), val_split=0.3, seed=2)
    for cache in ("", str(tmp_path / "cache")):
        stream = open_split(ds.train, 16, "train", cache, 0, True, lambda _: None)
        batches, steps = stream.epochs(4, seed=1, count=3)
        labels = [y for _, y in batches.as_numpy_iterator()]
        assert len(labels) == 3 * steps == 3 * math.ceil(stream.count / 4)
        epochs = [np.concatenate(labels[i * steps : (i + 1) * steps]) for i in range(3)]
        assert all(sorted(e.tolist()) == sorted(stream.labels.tolist()) for e in epochs)
        images = [x for x, _ in batches.as_numpy_iterator()]
        assert any(not np.array_equal(a, b) for a, b in zip(images[:steps], images[steps : 2 * steps]))
        again = [x for x, _ in stream.epochs(4, seed=1, count=3)[0].as_numpy_iterator()]  # a new dataset
        assert all(np.array_equal(a, b) for a, b in zip(images, again))


def test_augmentation_draws_depend_on_the_seed_the_epoch_and_the_sample_alone(tmp_path):
    ds = find_dataset(photo_tree(tmp_path / "data"), val_split=0.3, seed=2)
    stream = open_split(ds.train, 16, "train", "", 0, True, lambda _: None)
    draw = NumpyMap(lambda rng, index, image, label: (np.int64(index), rng.random()), (("int64", ()), ("float64", ())))

    def draws(seed, first):
        batches, _ = stream.epochs(5, seed, 2, draw, first=first)
        pairs = [(int(i), float(v)) for index, value in batches.as_numpy_iterator() for i, v in zip(index, value)]
        half = len(pairs) // 2
        return dict(pairs[:half]), dict(pairs[half:])

    one, two = draws(1, 0)
    assert set(one) == set(two) == set(stream.kept.tolist())
    assert all(one[i] != two[i] for i in one)  # a new draw every epoch
    assert draws(1, 0) == (one, two)  # the same in every run
    assert draws(1, 1)[0] == two  # epoch 1 is epoch 1, whichever stage asks
    assert draws(2, 0)[0] != one


def test_batches_split_evenly_over_the_devices_or_say_why_they_cannot(tmp_path):
    ds = find_dataset(photo_tree(tmp_path / "data"), val_split=0.3, seed=2)
    stream = open_split(ds.val, 16, "val", "", 0, False, lambda _: None)
    sizes = [len(y) for _, y in stream.batches(4, devices=2).as_numpy_iterator()]
    assert sum(sizes) == stream.count // 2 * 2 and all(n % 2 == 0 for n in sizes)
    assert even_count(5, 2, "val") == 4 and even_count(5, 1, "val") == 5
    with pytest.raises(UserError, match="val: 1 readable image cannot be shared by 2 devices"):
        even_count(1, 2, "val")


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


def test_images_resized_another_way_make_a_new_cache(tmp_path, monkeypatch):
    ds = find_dataset(photo_tree(tmp_path / "data"), val_split=0.3, seed=2)
    cache, log = tmp_path / "cache", []
    open_split(ds.val, 24, "val", str(cache), 0, False, log.append)
    monkeypatch.setattr(stream_module, "RESIZE_VERSION", "another-resize")
    open_split(ds.val, 24, "val", str(cache), 0, False, log.append)
    assert all("writing an image cache" in line for line in log) and len(list(cache.glob("*.index"))) == 2


def test_a_split_with_no_readable_image_is_one_clear_error(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(2):
            (tmp_path / label / f"{i}.jpg").write_bytes(b"junk")
    ds = find_dataset(tmp_path, val_split=0.5)
    with pytest.raises(UserError, match="none of the 2 images could be read"):
        open_split(ds.train, 16, "train", "", 0, True, lambda _: None)

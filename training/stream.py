"""The classification input pipeline on tf.data: images are read from their files in parallel
(OpenCV decode and resize, as the runner does: data.decode_for_training), batched and prefetched,
and never all held in memory. Each split is scanned once first, which finds the unreadable files
before training (they are counted and skipped) and, with a cache folder, writes the decoded
images to an on-disk tf.data cache that later epochs and later runs read instead of the files.

Without a cache, the training split's file order is shuffled in full every epoch (a shuffle of
paths, cheap) before decoding. With a cache, the cache holds the files in one seeded random order
and a buffer of ``SHUFFLE_BUFFER`` decoded images reshuffles them each epoch: memory stays bounded
by that buffer, whatever the size of the folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..deploy.errors import UserError
from ..deploy.ops import RESIZE_VERSION
from .data import Split, decode_for_training

SHUFFLE_BUFFER = 2048  # decoded images held for shuffling when the images come from a cache
CACHE_VERSION = "v1"  # part of every cache name: a change of the decoding makes new caches


def _decoder(size: int) -> Callable:
    """(path, label, index) -> (image uint8 (size, size, 3), label, index, readable)."""

    def load(path: bytes) -> tuple[np.ndarray, bool]:
        image = decode_for_training(Path(path.decode()), size)
        return (np.zeros((size, size, 3), np.uint8), False) if image is None else (image, True)

    def decode(path, label, index):
        image, ok = tf.numpy_function(load, [path], (tf.uint8, tf.bool), stateful=False)
        image.set_shape((size, size, 3))
        ok.set_shape(())
        return image, label, index, ok

    return decode


def cache_name(split: Split, size: int, order: np.ndarray, name: str) -> str:
    """A cache file name that changes when a file, its size or time, a label, the order or the
    input size changes, so a cache never serves images of another folder state."""
    digest = hashlib.sha256(f"{CACHE_VERSION} {RESIZE_VERSION} {size}".encode())
    for i in order:
        path = Path(split.paths[i])
        try:
            stat = path.stat()
            stamp = f"{stat.st_size} {stat.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(f"\n{path.resolve()} {stamp} {split.labels[i]}".encode())
    return f"{name}-{size}px-{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class SplitStream:
    """One split's images, read from files (or the cache) on demand."""

    split: Split
    size: int
    order: np.ndarray  # (n,) the pipeline's file order (the cache's order)
    readable: np.ndarray  # (n,) bool, indexed like split.paths
    cache_file: str | None

    @property
    def skipped(self) -> list[Path]:
        return [p for p, ok in zip(self.split.paths, self.readable) if not ok]

    @property
    def labels(self) -> np.ndarray:
        """The readable images' labels in split order."""
        return self.split.labels[self.readable]

    @property
    def count(self) -> int:
        return int(self.readable.sum())

    def decoded(self) -> tf.data.Dataset:
        """(image, label, index, readable) for every file in ``order``, from the cache when there is one."""
        paths = np.array([str(self.split.paths[i]) for i in self.order])
        ds = tf.data.Dataset.from_tensor_slices((paths, self.split.labels[self.order], self.order))
        ds = ds.map(_decoder(self.size), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.cache(self.cache_file) if self.cache_file else ds

    def images(self, batch_size: int) -> tf.data.Dataset:
        """Batches of (uint8 images, labels) of the readable images, in ``order`` (split order
        without a cache), decoded in parallel and prefetched."""
        return self._readable(self.decoded()).batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def shuffled(self, batch_size: int, seed: int) -> tf.data.Dataset:
        """Batches of (uint8 images, labels) in a new random order every epoch."""
        if self.cache_file:
            ds = self._readable(self.decoded()).shuffle(min(SHUFFLE_BUFFER, self.count), seed=seed,
                                                   reshuffle_each_iteration=True)
        else:
            kept = np.flatnonzero(self.readable)
            paths = np.array([str(self.split.paths[i]) for i in kept])
            ds = (tf.data.Dataset.from_tensor_slices((paths, self.split.labels[kept], kept))
                  .shuffle(len(kept), seed=seed, reshuffle_each_iteration=True)
                  .map(_decoder(self.size), num_parallel_calls=tf.data.AUTOTUNE))
            ds = self._readable(ds)
        return ds.batch(batch_size)

    def _readable(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """The images the scan could read, as (image, label); their number is known (Keras shows
        steps and never runs out of data). A file that breaks after the scan stops the run."""
        ds = ds.filter(_is_readable).map(_image_label)
        return ds.apply(tf.data.experimental.assert_cardinality(self.count))


def _is_readable(image, label, index, ok):
    return ok


def _image_label(image, label, index, ok):
    return image, label


def _index_readable(image, label, index, ok):
    return index, ok


def open_split(split: Split, size: int, name: str, cache_dir: str, seed: int, shuffle_cache: bool,
               log: Callable[[str], None]) -> SplitStream:
    """Scan a split once (decoding every file, keeping only whether it could be read) and return
    its stream. With ``cache_dir`` the scan writes the cache, or reads it when an earlier run wrote it."""
    n = len(split.paths)
    order = np.random.default_rng(seed).permutation(n) if (cache_dir and shuffle_cache) else np.arange(n)
    cache_file = None
    if cache_dir:
        folder = Path(cache_dir).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot make the cache folder {folder}: {exc.strerror}") from exc
        cache_file = str(folder / cache_name(split, size, order, name))
        found = Path(cache_file + ".index").is_file()
        log(f"{name}: {'reading the image cache' if found else 'writing an image cache to'} {cache_file}")
    stream = SplitStream(split, size, order, np.zeros(n, bool), cache_file)
    flags = stream.decoded().map(_index_readable).batch(4096)
    try:
        for index, ok in flags.as_numpy_iterator():
            stream.readable[index] = ok
    except tf.errors.AlreadyExistsError as exc:
        raise UserError(f"the image cache {cache_file} is being written by another run, or a stopped run left "
                        f"its lock file: wait for it, or delete {cache_file}_0.lockfile if no run uses it") from exc
    if not stream.count:
        raise UserError(f"none of the {n} images could be read")
    return stream

"""The training input pipeline on tf.data, for every task: samples are read from their files on
demand (a task's loader: OpenCV decode and resize, as the runner does, in parallel through
tf.numpy_function), augmented by the task's numpy code inside the pipeline, batched and
prefetched, and never all held in memory. Each split is scanned once first, which finds the
unreadable files before training (they are counted and skipped), keeps each file's small facts
for the metrics (training/samples.py) and, with a cache folder, writes the decoded samples to an
on-disk tf.data cache that later epochs and later runs read instead of the files.

Training reads every epoch from one dataset (``SampleStream.epochs``; Keras gets
``steps_per_epoch``). Epoch e is made from seeds that follow from the run's seed and e alone:
without a cache, its file order is a full shuffle of the indices (cheap), before decoding; with a
cache, the cache holds the files in one seeded random order and a buffer of decoded samples
(``SHUFFLE_BUFFER``, fewer for large samples: ``SHUFFLE_BYTES``) reshuffles them: memory stays
bounded whatever the folder's size. Augmentation draws from a numpy generator seeded by (seed, e,
sample index). So a run is the same every time, on one device or on several: Keras under a
tf.distribute strategy takes a batch from a new iterator to build the model and then starts
another, which a reshuffle per iteration would make a different epoch.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..deploy.errors import UserError, raise_if_interrupted
from ..deploy.ops import RESIZE_VERSION
from .data import Split, decode_for_training
from .samples import ArraySpec, Source

SHUFFLE_BUFFER = 2048  # decoded samples held for shuffling when the samples come from a cache
SHUFFLE_BYTES = 256 * 2**20  # ... and at most about this many bytes of them
CACHE_VERSION = "v2"  # part of every cache name: a change of the decoding or layout makes new caches
SCAN_BATCH = 4096


@dataclass(frozen=True)
class NumpyMap:
    """A per-sample numpy function inside the pipeline: ``fn(rng, index, *arrays) -> arrays`` of
    ``specs``; ``rng`` is a numpy Generator when the stream was given a seed, else None."""

    fn: Callable[..., tuple]
    specs: tuple[ArraySpec, ...]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run seeded with ``seed``, as a Python int: a tensor seed in
    tf.data's shuffle fails when TensorFlow's global seed is 0."""
    return (seed * 1_000_003 + epoch) % 2**31


def epoch_order(seed: int, epoch, count: int) -> np.ndarray:
    """A permutation of ``count`` drawn from (seed, epoch) alone (numpy; do not change it: cached)."""
    return _epoch_order(seed % 2**32, int(epoch), count)


@functools.lru_cache(maxsize=8)
def _epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(count).astype(np.int64)


def per_epoch(one_epoch: Callable, first: int, count: int, steps: int) -> tf.data.Dataset:
    """``one_epoch(epoch tensor)``'s ``steps`` batches for epochs first .. first + count - 1, one
    after another, as one dataset."""
    ds = tf.data.Dataset.range(first, first + count).flat_map(one_epoch)
    return ds.apply(tf.data.experimental.assert_cardinality(count * steps))


def one_by_one(epochs: list[tf.data.Dataset], steps: int) -> tf.data.Dataset:
    """The epochs' datasets (``steps`` batches each) read one after another, as one dataset (for
    epochs that need Python-int seeds; every input gets its own iterator: share no large constants)."""

    def steps_of(epoch):
        return tf.data.Dataset.from_tensors(epoch).repeat(steps)

    ds = tf.data.Dataset.choose_from_datasets(epochs, tf.data.Dataset.range(len(epochs)).flat_map(steps_of))
    return ds.apply(tf.data.experimental.assert_cardinality(len(epochs) * steps))


def _tf_specs(specs: tuple[ArraySpec, ...]) -> list[tf.dtypes.DType]:
    return [tf.as_dtype(dtype) for dtype, _ in specs]


def _shaped(tensors, specs: tuple[ArraySpec, ...]) -> tuple:
    for tensor, (_, shape) in zip(tensors, specs):
        tensor.set_shape(shape)
    return tuple(tensors)


def _as_arrays(values, specs: tuple[ArraySpec, ...]) -> list[np.ndarray]:
    return [np.asarray(v, dtype) for v, (dtype, _) in zip(values, specs)]


def cache_name(source: Source, order: np.ndarray) -> str:
    """A cache file name that changes when a file, its size or time, a label, the order, the
    sample size, the loader's variant or the resize (ops.RESIZE_VERSION) changes, so a cache never
    serves samples of another folder state."""
    digest = hashlib.sha256(f"{CACHE_VERSION} {RESIZE_VERSION} {source.size} {source.variant}".encode())
    for i in order:
        path = Path(source.paths[i])
        try:
            stat = path.stat()
            stamp = f"{stat.st_size} {stat.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(f"\n{path.resolve()} {stamp} {source.stamps[i]}".encode())
    return f"{source.name}-{source.size}px-{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class SampleStream:
    """One split's samples, read from files (or the cache) on demand."""

    source: Source
    order: np.ndarray  # (n,) the pipeline's file order (the cache's order)
    readable: np.ndarray  # (n,) bool, indexed like source.paths
    info: tuple[np.ndarray, ...]  # the loader's info arrays, (n, ...) each, indexed like source.paths
    cache_file: str | None
    errors: list = field(default_factory=list)  # UserErrors raised by the loader (the scan reports the first)

    @property
    def skipped(self) -> list[Path]:
        return [p for p, ok in zip(self.source.paths, self.readable) if not ok]

    @property
    def kept(self) -> np.ndarray:
        """Indices of the readable samples, in split order (the order of ``batches`` without a cache)."""
        return np.flatnonzero(self.readable)

    @property
    def count(self) -> int:
        return int(self.readable.sum())

    def _decode(self, index):
        specs = self.source.specs

        def load(i) -> list:
            try:
                arrays = self.source.load(int(i))
            except UserError as exc:  # a label that cannot be used: reported after the scan
                self.errors.append(exc)
                arrays = None
            if arrays is None:
                return [False, *(np.zeros([d or 0 for d in shape], dtype) for dtype, shape in specs)]
            return [True, *_as_arrays(arrays, specs)]

        ok, *arrays = tf.numpy_function(load, [index], [tf.bool, *_tf_specs(specs)], stateful=False)
        ok.set_shape(())
        return (index, ok, *_shaped(arrays, specs))

    def decoded(self) -> tf.data.Dataset:
        """(index, readable, *arrays) for every file in ``order``, from the cache when there is one."""
        ds = tf.data.Dataset.from_tensor_slices(self.order.astype(np.int64))
        ds = ds.map(self._decode, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.cache(self.cache_file) if self.cache_file else ds

    def _readable(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """(index, *arrays) of the samples the scan could read; their number is known (Keras shows
        steps and never runs out of data). A file that breaks after the scan stops the run."""
        ds = ds.filter(_is_readable).map(_without_flag)
        return ds.apply(tf.data.experimental.assert_cardinality(self.count))

    def _shuffle_buffer(self) -> int:
        size = sum(np.dtype(dtype).itemsize * math.prod(d or self.source.size for d in shape)
                   for dtype, shape in self.source.specs)
        return max(1, min(self.count, SHUFFLE_BUFFER, max(64, SHUFFLE_BYTES // max(size, 1))))

    def batches(self, batch_size: int, fn: NumpyMap | None = None, devices: int = 1,
                keep: tuple[int, ...] | None = None) -> tf.data.Dataset:
        """Batches of the readable samples in ``order``: their arrays (without their index; only
        those numbered in ``keep``, e.g. to leave out arrays of varying length), or what ``fn`` makes
        of each (with no generator: nothing random), prefetched. With several ``devices`` every
        batch splits evenly over them (see :func:`even_count`)."""
        ds = self._readable(self.decoded()).take(even_count(self.count, devices, self.source.name))
        if fn is not None:
            ds = map_numpy(ds, fn, None, 0)
        else:
            chosen = range(len(self.source.specs)) if keep is None else keep
            ds = ds.map(lambda index, *arrays: tuple(arrays[k] for k in chosen))
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def epochs(self, batch_size: int, seed: int, count: int, fn: NumpyMap | None = None, devices: int = 1,
               first: int = 0) -> tuple[tf.data.Dataset, int]:
        """(the batches of epochs first .. first + count - 1, one after another; batches per epoch).
        Every epoch holds the readable samples in its own order, as loaded (without their index) or
        as ``fn`` makes them with a generator seeded by (seed, epoch, index). Give Keras
        ``steps_per_epoch``."""
        used = even_count(self.count, devices, self.source.name)
        steps = math.ceil(used / batch_size)

        def finish(ds: tf.data.Dataset, epoch) -> tf.data.Dataset:
            ds = ds.take(used)
            ds = map_numpy(ds, fn, seed, epoch) if fn is not None else ds.map(_without_index)
            return ds.batch(batch_size)

        if self.cache_file:  # a buffer shuffle, whose seed must be a Python int: a dataset per epoch
            cached, buffer = self._readable(self.decoded()), self._shuffle_buffer()
            ds = one_by_one([finish(cached.shuffle(buffer, seed=epoch_seed(seed, e), reshuffle_each_iteration=False), e)
                             for e in range(first, first + count)], steps)
        else:  # a full shuffle of the indices, drawn in numpy

            def one_epoch(epoch):
                order = tf.numpy_function(lambda e: self.kept[epoch_order(seed, e, self.count)], [epoch], tf.int64,
                                          stateful=False)
                order = tf.data.Dataset.from_tensor_slices(order)
                return finish(self._readable(order.map(self._decode, num_parallel_calls=tf.data.AUTOTUNE)), epoch)

            ds = per_epoch(one_epoch, first, count, steps)
        return ds.prefetch(tf.data.AUTOTUNE), steps


def even_count(count: int, devices: int, name: str) -> int:
    """How many of ``count`` samples an epoch uses on ``devices``: a multiple of them. Keras under a
    tf.distribute strategy fails on a batch that does not split evenly over the devices (a last,
    partial batch), so the last ``count % devices`` samples of each epoch (a different few each
    epoch when shuffled) are left out; on one device, none."""
    if count < devices:
        raise UserError(f"{name}: {count} readable image{'s' if count != 1 else ''} cannot be shared by "
                        f"{devices} devices: add images or use fewer devices")
    return count // devices * devices


def _is_readable(index, ok, *arrays):
    return ok


def _without_flag(index, ok, *arrays):
    return (index, *arrays)


def _without_index(index, *arrays):
    return arrays


def map_numpy(ds: tf.data.Dataset, fn: NumpyMap, seed: int | None, epoch) -> tf.data.Dataset:
    """``fn`` on every (index, *arrays) element, in parallel; with ``seed``, each element gets a
    numpy generator seeded by (seed, epoch, index); ``epoch`` may be a tensor."""

    def call(epoch_value, index, *arrays) -> list:
        rng = None if seed is None else np.random.default_rng([seed % 2**32, int(epoch_value), int(index)])
        return _as_arrays(fn.fn(rng, int(index), *arrays), fn.specs)

    def apply(index, *arrays):
        out = tf.numpy_function(call, [tf.cast(epoch, tf.int64), index, *arrays], _tf_specs(fn.specs),
                                stateful=False)
        return _shaped(out, fn.specs)

    return ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)


def open_samples(source: Source, cache_dir: str, seed: int, shuffle_cache: bool,
                 log: Callable[[str], None]) -> SampleStream:
    """Scan a split once (decoding every file, keeping whether it could be read and its info
    arrays) and return its stream. With ``cache_dir`` the scan writes the cache, or reads it when
    an earlier run wrote it."""
    n = len(source.paths)
    order = np.random.default_rng(seed).permutation(n) if (cache_dir and shuffle_cache) else np.arange(n)
    cache_file = None
    if cache_dir:
        folder = Path(cache_dir).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot make the cache folder {folder}: {exc.strerror}") from exc
        cache_file = str(folder / cache_name(source, order))
        found = Path(cache_file + ".index").is_file()
        log(f"{source.name}: {'reading the image cache' if found else 'writing an image cache to'} {cache_file}")
    info_specs = source.specs[len(source.specs) - source.info :]
    info = tuple(np.zeros((n, *shape), dtype) for dtype, shape in info_specs)
    stream = SampleStream(source, order, np.zeros(n, bool), info, cache_file)
    first = len(source.specs) - source.info

    def facts(index, ok, *arrays):
        return (index, ok, *arrays[first:])

    flags = stream.decoded().map(facts).batch(SCAN_BATCH)
    try:
        for index, ok, *values in flags.as_numpy_iterator():
            raise_if_interrupted()
            stream.readable[index] = ok
            for target, value in zip(info, values):
                target[index] = value
    except tf.errors.AlreadyExistsError as exc:
        raise UserError(f"the image cache {cache_file} is being written by another run, or a stopped run left "
                        f"its lock file: wait for it, or delete {cache_file}_0.lockfile if no run uses it") from exc
    if stream.errors:
        if cache_file:  # a cache that marks a bad label as an unreadable image must not be read again
            for leftover in Path(cache_file).parent.glob(Path(cache_file).name + ".*"):
                leftover.unlink(missing_ok=True)
        raise stream.errors[0]
    if not stream.count:
        raise UserError(f"none of the {n} images could be read")
    return stream


# --- classification: (image, label) per file -------------------------------------------------


@dataclass(frozen=True)
class SplitStream(SampleStream):
    """A classification split's stream: (image uint8 (size, size, 3), label) per file."""

    split: Split | None = None

    @property
    def labels(self) -> np.ndarray:
        """The readable images' labels in split order."""
        return self.split.labels[self.readable]

    def images(self, batch_size: int, devices: int = 1) -> tf.data.Dataset:
        """Batches of (uint8 images, labels) of the readable images, in ``order`` (split order
        without a cache), decoded in parallel and prefetched."""
        return self.batches(batch_size, devices=devices)


def split_source(split: Split, size: int, name: str) -> Source:
    def load(i: int) -> tuple[np.ndarray, np.int64] | None:
        image = decode_for_training(Path(split.paths[i]), size)
        return None if image is None else (image, split.labels[i])

    return Source(name, tuple(split.paths), tuple(str(label) for label in split.labels), size, load,
                  (("uint8", (size, size, 3)), ("int64", ())))


def open_split(split: Split, size: int, name: str, cache_dir: str, seed: int, shuffle_cache: bool,
               log: Callable[[str], None]) -> SplitStream:
    """A classification split's stream (see :func:`open_samples`)."""
    s = open_samples(split_source(split, size, name), cache_dir, seed, shuffle_cache, log)
    return SplitStream(s.source, s.order, s.readable, s.info, s.cache_file, s.errors, split)

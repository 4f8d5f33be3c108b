"""The fit kit every per-task trainer shares: progress lines, the run folder, prediction over
streamed batches, the fine-tune schedule and callbacks. Progress goes to stderr (stdout is for
results)."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ..deploy.errors import UserError, raise_if_interrupted, shell_quote
from .model import set_trainable_top
from .options import TrainConfig
from .runfolder import (  # noqa: F401  (TF-free, here for the trainers)
    export_hint,
    log_line,
    new_run_dir,
    warn_failed_classes,
)
from .stream import epoch_order, even_count, per_epoch


class EpochLine(keras.callbacks.Callback):
    """One line per epoch (or every ``every`` epochs) with loss, accuracy and time."""

    def __init__(self, stage: str, total: int, log: Callable[[str], None], every: int = 1,
                 metric: str | None = "accuracy") -> None:
        super().__init__()
        self.stage, self.total, self.log, self.every, self.metric = stage, total, log, every, metric
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every and epoch + 1 != self.total:
            return
        logs = logs or {}
        m, short = self.metric, {"accuracy": "acc"}.get(self.metric, self.metric)
        extra = f"  {short} {logs.get(m, 0):.4g}" if m else ""
        extra_val = f"  val_{short} {logs.get('val_' + m, 0):.4g}" if m else ""
        self.log(
            f"{self.stage} epoch {epoch + 1:>3}/{self.total}  loss {logs.get('loss', 0):.4g}{extra}  "
            f"val_loss {logs.get('val_loss', 0):.4g}{extra_val}  {time.perf_counter() - self.start:.1f} s"
        )


class StopOnSignal(keras.callbacks.Callback):
    """Stops a fit at the end of the batch during which Ctrl-C or SIGTERM came (noted by
    deploy.errors.interrupts_deferred around the training): raised where it lands, inside TensorFlow,
    such a signal can be lost and the run finish as if none had come."""

    def _check(self, batch: int, logs: dict | None = None) -> None:
        try:
            raise_if_interrupted()
        except KeyboardInterrupt:
            self.model.stop_training = True
            raise

    on_train_batch_end = on_test_batch_end = on_predict_batch_end = _check


def predict_batches(model: keras.Model, batches: tf.data.Dataset) -> Iterator[tuple[list[np.ndarray], list]]:
    """(model outputs, the batch's other arrays) for every (images, *others) batch, one batch in
    memory at a time. Inference only: runs on this process's first device also under a strategy."""
    run = tf.function(lambda x: model(x, training=False))
    for images, *others in batches:
        raise_if_interrupted()
        out = run(tf.cast(images, tf.float32))
        yield [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])], [o.numpy() for o in others]


def predict_all(model: keras.Model, batches: tf.data.Dataset) -> tuple[np.ndarray, ...]:
    """The first output and the other arrays of every batch, concatenated (for small outputs:
    probabilities, points; a head's features: ``features_of``)."""
    parts = [(out[0], *others) for out, others in predict_batches(model, batches)]
    return tuple(np.concatenate(column) for column in zip(*parts))


FEATURES_IN_MEMORY = 256 << 20  # bytes of a head's features (per array) held in memory; more go to a file


def feature_array(shape: tuple[int, ...], dtype, folder: Path) -> np.ndarray:
    """Room for a head's features: in memory up to FEATURES_IN_MEMORY bytes, else an array backed by
    an unnamed file in ``folder`` (gone when the array is freed or the process ends), which the OS
    pages in and out: 50,000 photos' 14x14x576 keypoint features are 22 GB."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if nbytes <= FEATURES_IN_MEMORY:
        return np.empty(shape, dtype)
    with tempfile.TemporaryFile(dir=folder, prefix="features-") as handle:  # the map keeps its own handle
        try:  # the room now: a map of a file that cannot grow dies of SIGBUS mid-pass, with no message
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(handle.fileno(), 0, nbytes)
        except OSError as exc:
            raise UserError(f"no room in {folder} for the head's features ({nbytes / 2**20:,.0f} MB; up to "
                            f"{FEATURES_IN_MEMORY >> 20} MB stay in memory): {exc.strerror}. Free disk space or "
                            "give --runs-dir on a larger disk") from exc
        return np.memmap(handle, dtype, "w+", shape=shape)


def on_disk(*arrays: np.ndarray) -> str:
    """' (N MB of them on disk ...)' for the log line, when some features went to a file."""
    mb = sum(a.nbytes for a in arrays if isinstance(a, np.memmap)) / 2**20
    return f" ({mb:,.0f} MB of them in a file in the run folder while training)" if mb else ""


def features_of(model: keras.Model, parts: list[tf.data.Dataset], rows: int, folder: Path
                ) -> tuple[np.ndarray, ...]:
    """The first output of every batch of ``parts`` (one after another, ``rows`` in all), written
    into one ``feature_array`` as the batches come, and the batches' other arrays concatenated (labels,
    points). Nothing is held twice: a list of batches and its concatenation would be."""
    out, n, rest = None, 0, []
    for part in parts:
        for outputs, others in predict_batches(model, part):
            first = outputs[0]
            if out is None:
                out = feature_array((rows, *first.shape[1:]), first.dtype, folder)
            if n + len(first) > rows:
                raise RuntimeError(f"features_of: more than the {rows} rows expected")
            out[n : n + len(first)] = first
            n += len(first)
            rest.append(others)
    if n != rows:
        raise RuntimeError(f"features_of: {n} rows where {rows} were expected")
    return (out, *(np.concatenate(column) for column in zip(*rest)))


class FeatureRows:
    """A head's features and targets as ``feature_batches`` reads them, for a ``with`` block around
    the head's training. TF keeps a dataset's numpy functions, and what they hold, until the process
    ends: leaving the block drops the arrays, so that they (and a features file) can go."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y

    def __enter__(self) -> FeatureRows:
        return self

    def __exit__(self, *exc) -> None:
        self.x = self.y = None


def feature_batches(rows: FeatureRows, batch: int, devices: int, seed: int | None = None,
                    epochs: int = 1) -> tuple[tf.data.Dataset, int]:
    """(batches of a head's features and targets; batches per epoch): in order, or with ``seed``
    ``epochs`` epochs, each in an order drawn from (seed, epoch), in one dataset (give Keras
    ``steps_per_epoch``; see training/stream.py); with several ``devices`` every batch splits
    evenly over them. The arrays stay numpy arrays (no copy of them goes into the graph) and every
    batch is gathered from them in one numpy call."""
    x, y = rows.x, rows.y
    count, x_shape, y_shape = len(x), x.shape[1:], y.shape[1:]
    used = even_count(count, devices, "features")
    steps = math.ceil(used / batch)
    specs = [tf.as_dtype(x.dtype), tf.as_dtype(y.dtype)]
    del x, y  # the function below reads them through ``rows`` only

    def gather_rows(epoch, step):
        order = np.arange(count) if seed is None else epoch_order(seed, epoch, count)
        i = order[step * batch : min((step + 1) * batch, used)]
        return np.asarray(rows.x[i]), rows.y[i]  # a file-backed x gives a plain array

    def one_epoch(epoch):
        def gather(step):
            xb, yb = tf.numpy_function(gather_rows, [epoch, step], specs, stateful=False)
            xb.set_shape((None, *x_shape))
            yb.set_shape((None, *y_shape))
            return xb, yb

        return tf.data.Dataset.range(steps).map(gather)

    return per_epoch(one_epoch, 0, 1 if seed is None else epochs, steps).prefetch(tf.data.AUTOTUNE), steps


def run_folder(config: TrainConfig, scratch: Path | None) -> Path:
    """A new run folder, or a multiworker non-chief's scratch folder."""
    return new_run_dir(config) if scratch is None else scratch


def log_saved(run_dir: Path, config: TrainConfig, scratch: Path | None, log: Callable[[str], None],
              metrics: dict | None = None) -> None:
    """The run's last lines: a warning when the model never gets a class of ``metrics`` right, where it was saved,
    how to export it."""
    if scratch is None:
        warn_failed_classes(metrics or {}, log)
        log(f"run saved to {run_dir}")
        log(f"export it: edgevision export {shell_quote(run_dir)} --out {shell_quote(export_hint(config.run_name))}")


def unfreeze_backbone(owner: keras.Model, config: TrainConfig, log: Callable[[str], None]) -> None:
    """The whole backbone from scratch (weights 'none'), else its top ``config.unfreeze`` layers."""
    if config.weights == "none":
        trainable = set_trainable_top(owner, None)
        log(f"training the whole backbone from scratch ({trainable} weight tensors)")
    else:
        trainable = set_trainable_top(owner, config.unfreeze)
        log(f"fine-tuning the top {config.unfreeze} backbone layers ({trainable} weight tensors)")


def finetune_schedule(config: TrainConfig, steps_per_epoch: int):
    """Linear warm-up over the first 5% of steps to ``config.lr``, then cosine decay to 0."""
    steps = config.epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=config.lr, warmup_steps=max(1, steps // 20))


def finetune_callbacks(config: TrainConfig, run_dir: Path, log: Callable[[str], None], metric: str | None) -> list:
    return [
        *([keras.callbacks.EarlyStopping("val_loss", patience=config.patience, restore_best_weights=True)]
          if config.patience else []),
        keras.callbacks.TensorBoard(str(run_dir / "tb" / "finetune")),
        EpochLine("finetune", config.epochs, log, metric=metric),
        StopOnSignal(),
    ]

"""The fit kit every per-task trainer shares: progress lines, the run folder, prediction over
streamed batches, the fine-tune schedule and callbacks. Progress goes to stderr (stdout is for
results)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .model import set_trainable_top
from .options import TrainConfig
from .runfolder import export_hint, log_line, new_run_dir  # noqa: F401  (TF-free, here for the trainers)
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


def predict_batches(model: keras.Model, batches: tf.data.Dataset) -> Iterator[tuple[list[np.ndarray], list]]:
    """(model outputs, the batch's other arrays) for every (images, *others) batch, one batch in
    memory at a time. Inference only: runs on this process's first device also under a strategy."""
    run = tf.function(lambda x: model(x, training=False))
    for images, *others in batches:
        out = run(tf.cast(images, tf.float32))
        yield [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])], [o.numpy() for o in others]


def predict_all(model: keras.Model, batches: tf.data.Dataset) -> tuple[np.ndarray, ...]:
    """The first output and the other arrays of every batch, concatenated (for small outputs:
    features, probabilities, points). The first output is written into one array as the batches
    come (a list of parts and their concatenation would hold the features twice)."""
    steps = int(batches.cardinality())
    first, rest, n = None, [], 0
    for out, others in predict_batches(model, batches):
        if first is None:  # room for every batch at this batch's size (known cardinality), else grown
            first = np.empty((max(steps, 1) * len(out[0]), *out[0].shape[1:]), out[0].dtype)
        if n + len(out[0]) > len(first):
            first = np.concatenate([first[:n], np.empty((n + len(out[0]), *first.shape[1:]), first.dtype)])
        first[n : n + len(out[0])] = out[0]
        n += len(out[0])
        rest.append(others)
    return (first[:n], *(np.concatenate(column) for column in zip(*rest)))


def feature_batches(x: np.ndarray, y: np.ndarray, batch: int, devices: int, seed: int | None = None,
                    epochs: int = 1) -> tuple[tf.data.Dataset, int]:
    """(batches of arrays held in memory, a head's features; batches per epoch): in order, or with
    ``seed`` ``epochs`` epochs, each in an order drawn from (seed, epoch), in one dataset (give Keras
    ``steps_per_epoch``; see training/stream.py); with several ``devices`` every batch splits
    evenly over them. The arrays stay numpy arrays (no copy of them goes into the graph) and every
    batch is gathered from them in one numpy call."""
    used = even_count(len(x), devices, "features")
    steps = math.ceil(used / batch)
    specs = [tf.as_dtype(x.dtype), tf.as_dtype(y.dtype)]

    def rows(epoch, step):
        order = np.arange(len(x)) if seed is None else epoch_order(seed, epoch, len(x))
        i = order[step * batch : min((step + 1) * batch, used)]
        return x[i], y[i]

    def one_epoch(epoch):
        def gather(step):
            xb, yb = tf.numpy_function(rows, [epoch, step], specs, stateful=False)
            xb.set_shape((None, *x.shape[1:]))
            yb.set_shape((None, *y.shape[1:]))
            return xb, yb

        return tf.data.Dataset.range(steps).map(gather)

    return per_epoch(one_epoch, 0, 1 if seed is None else epochs, steps).prefetch(tf.data.AUTOTUNE), steps


def run_folder(config: TrainConfig, scratch: Path | None) -> Path:
    """A new run folder, or a multiworker non-chief's scratch folder."""
    return new_run_dir(config) if scratch is None else scratch


def log_saved(run_dir: Path, config: TrainConfig, scratch: Path | None, log: Callable[[str], None]) -> None:
    if scratch is None:
        log(f"run saved to {run_dir}")
        log(f"export it: edgevision export {run_dir} --out {export_hint(config.run_name)}")


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
    ]

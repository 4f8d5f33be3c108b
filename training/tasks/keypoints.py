"""Train a keypoint model: fast (head on cached backbone features) or finetune (then the top of
the backbone, with augmentation that moves the points with the image). Images stream from their
files (training/stream.py); ``distribute`` trains on a tf.distribute strategy, batch_size per device."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ...deploy.spec import TaskSpec
from ...deploy.tasks.keypoints import keypoint_metrics
from ..distribute import global_batch, shard_by_data, train_on_strategy
from ..fit import (
    EpochLine,
    FeatureRows,
    StopOnSignal,
    feature_batches,
    features_of,
    finetune_callbacks,
    finetune_schedule,
    log_line,
    log_saved,
    on_disk,
    predict_all,
    run_folder,
    unfreeze_backbone,
)
from ..keypoint_model import build_keypoint_model, normalised, with_flip_average
from ..keypoints import PointSet, augment_sample, find_point_dataset, flip_partner, point_source, subset
from ..metrics import save_curves_png
from ..options import TrainConfig
from ..runfolder import write_run_files
from ..stream import NumpyMap, SampleStream, open_samples

FEATURE_BATCH = 64  # images per step of the frozen backbone's feature pass and of evaluation


def _compile(model: keras.Model, lr, config: TrainConfig) -> None:
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay),
        loss=keras.losses.Huber(delta=0.05),
        metrics=["mae"],
    )


def _targets(stream: SampleStream, augment=None) -> NumpyMap:
    """(image, points 0..1) per sample; with ``augment(image, points, rng)`` an augmented copy."""
    size = stream.source.size

    def make(rng, index, image, points, scale):
        if augment is not None:
            image, points = augment(image, points, rng)
        return image, normalised(points, size)

    return NumpyMap(make, stream.source.specs[:2])


def _as_float(images, points):
    return tf.cast(images, tf.float32), points


def _fast_head(features, head, train_s: SampleStream, val_s: SampleStream, config, run_dir, log, augment,
               strategy) -> dict:
    """Fit the head on features of the training images (plus augmented copies), computed once from
    the stream and held in memory, or in a file in the run folder when large (fit.feature_array)."""
    t0 = time.perf_counter()
    parts = [train_s.batches(FEATURE_BATCH, fn=_targets(train_s))]
    if config.augment.copies:  # each copy an epoch of the seeded stream: new draws, in a new order
        parts.append(train_s.epochs(FEATURE_BATCH, config.seed, config.augment.copies, _targets(train_s, augment))[0])
    f_train, y_train = features_of(features, parts, train_s.count * (1 + config.augment.copies), run_dir)
    f_val, y_val = features_of(features, [val_s.batches(FEATURE_BATCH, fn=_targets(val_s))], val_s.count, run_dir)
    log(f"features: {len(f_train)} train, {len(f_val)} val in {time.perf_counter() - t0:.1f} s"
        + on_disk(f_train, f_val))
    with strategy.scope():
        _compile(head, config.head_lr, config)
    devices = strategy.num_replicas_in_sync
    batch = config.batch_size * devices
    with FeatureRows(f_train, y_train) as train_rows, FeatureRows(f_val, y_val) as val_rows:
        train_ds, steps = feature_batches(train_rows, batch, devices, config.seed, config.head_epochs)
        history = head.fit(
            shard_by_data(train_ds), validation_data=shard_by_data(feature_batches(val_rows, batch, devices)[0]),
            epochs=config.head_epochs, steps_per_epoch=steps, shuffle=False, verbose=0,
            callbacks=[
                keras.callbacks.EarlyStopping("val_loss", patience=max(config.patience, 20), restore_best_weights=True),
                keras.callbacks.TensorBoard(str(run_dir / "tb" / "head")),
                EpochLine("head", config.head_epochs, log, every=max(1, config.head_epochs // 10), metric="mae"),
                StopOnSignal(),
            ],
        )
    return history.history


def _fine_tune(model, features, train_s: SampleStream, val_s: SampleStream, config, run_dir, log, augment,
               strategy) -> dict:
    unfreeze_backbone(features, config, log)
    devices = strategy.num_replicas_in_sync
    batch = config.batch_size * devices
    train_ds, steps = train_s.epochs(batch, config.seed, config.epochs, _targets(train_s, augment), devices)
    val_ds = val_s.batches(batch, _targets(val_s), devices)
    with strategy.scope():
        _compile(model, finetune_schedule(config, steps), config)
    history = model.fit(
        shard_by_data(train_ds.map(_as_float)), validation_data=shard_by_data(val_ds.map(_as_float)),
        epochs=config.epochs, steps_per_epoch=steps, shuffle=False, verbose=0,
        callbacks=finetune_callbacks(config, run_dir, log, "mae"),
    )
    return history.history


def readable_points(points: PointSet, stream: SampleStream) -> PointSet:
    """The labels of the images the scan could read; image diagonals (the norm without eye
    corners) from the source sizes the scan saw."""
    kept = subset(points, stream.readable)
    if kept.norm_kind != "diagonal":
        return kept
    hw = stream.info[0][stream.kept, 4:6]  # (n, 2) source height, width
    return replace(kept, norm=np.hypot(hw[:, 0], hw[:, 1]).astype(np.float32))


def evaluate_points(model: keras.Model, val_s: SampleStream, kept: PointSet, names: tuple[str, ...]) -> dict:
    """Metrics in source pixels: the streamed predictions are mapped back with each image's resize
    factor (kept by the scan); ``kept`` holds the labels of the readable validation images."""
    size = val_s.source.size
    pred = predict_all(model, val_s.batches(FEATURE_BATCH))[0] * size  # (n, k, 2) input pixels
    scale = val_s.info[0][val_s.kept, 0:2].astype(np.float32)  # (n, 2) input pixels per source pixel
    return keypoint_metrics(pred / scale[:, None, :], kept.points, kept.norm, names, kept.norm_kind)


def train(config: TrainConfig, log: Callable[[str], None] = log_line) -> Path:
    """Train a keypoint model as ``config`` says; return the run folder (training/distribute.py: on
    a multiworker cluster only the chief keeps it)."""
    return train_on_strategy(config, log, _train)


def _train(config: TrainConfig, log: Callable[[str], None], strategy, scratch: Path | None) -> Path:
    t_start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    names, size = config.keypoints.points, config.input_size
    spec = TaskSpec(kind="keypoints", input_hw=(size, size), labels=names)
    train_set, val_set = find_point_dataset(config.data, names, config.val_split, config.seed, diagonals=False)
    train_s = open_samples(point_source(train_set, spec, "keypoints-train"), config.cache, config.seed, True, log)
    val_s = open_samples(point_source(val_set, spec, "keypoints-val"), config.cache, config.seed, False, log)
    skipped = train_s.skipped + val_s.skipped
    log(f"{train_s.count} train / {val_s.count} val images, points {', '.join(names)}, {config.keypoints.head} head"
        + (f"; {len(skipped)} unreadable images skipped" if skipped else ""))
    global_batch(config.batch_size, strategy, log)
    run_dir = run_folder(config, scratch)
    with strategy.scope():
        model, features, head = build_keypoint_model(len(names), size, config.alpha, config.weights, config.dropout,
                                                     config.keypoints.head, config.backbone)
    partner = flip_partner(names)

    def augment(image, points, rng):
        return augment_sample(image, points, rng, config.augment, partner)

    history = {}
    stage_args = (train_s, val_s, config, run_dir, log, augment, strategy)
    if config.weights != "none":
        history["head"] = _fast_head(features, head, *stage_args)
    if config.mode == "finetune":
        history["finetune"] = _fine_tune(model, features, *stage_args)
    if config.keypoints.flip_average:
        model = with_flip_average(model, size, partner)
        log("the saved model averages each prediction with the one on the mirrored image")
    kept = readable_points(val_set, val_s)
    metrics = evaluate_points(model, val_s, kept, names)
    metrics.update({"train_images": train_s.count, "val_images": val_s.count,
                    "skipped_images": [str(p) for p in skipped],
                    "train_seconds": round(time.perf_counter() - t_start, 1), "mode": config.mode,
                    "head": config.keypoints.head, "task": "keypoints", "flip_average": config.keypoints.flip_average,
                    "devices": strategy.num_replicas_in_sync})
    model.save(run_dir / "model.keras")
    val_rows = [(p, [json.dumps(pts.tolist()), str(n)]) for p, pts, n in zip(kept.paths, kept.points, kept.norm)]
    write_run_files(run_dir, spec, config.to_toml(), metrics, history, val_rows)
    save_curves_png(history, run_dir / "curves.png", metric="mae")
    log(f"val NME {metrics['nme_mean']:.4f} mean, {metrics['nme_median']:.4f} median, "
        f"{metrics['nme_share_below_0.1']:.1%} below 0.1 ({metrics['normalised_by']}); "
        f"{metrics['pixel_error_mean']:.2f} px mean error; {metrics['train_seconds']:.0f} s in all")
    log_saved(run_dir, config, scratch, log)
    return run_dir


# --- export and card: what this task checks and says -----------------------------------------

OUTPUTS = ("points",)
MODEL_TEXT = {
    "regression": "MobileNetV2 (alpha {alpha}) + global pooling + sigmoid regression of (x, y)",
    "heatmap": "MobileNetV2 (alpha {alpha}) to stride 16 + a heat map per point + spatial soft-argmax",
}


def agreement(expected: list[np.ndarray], got: list[np.ndarray], spec: TaskSpec) -> tuple[float, str]:
    """Export parity: (n, k, 2) normalised points compared in input pixels."""
    shift = np.linalg.norm((got[0] - expected[0]) * np.float32(spec.input_hw[::-1]), axis=-1)
    return float((shift < 0.5).mean()), "points within 0.5 input px"


def quality(results: list, known: list[list[str]], spec: TaskSpec) -> dict:
    """NME of the ONNX model's points (source pixels) against the run's validation points."""
    pred = np.stack([r.xy for r in results])
    true = np.asarray([json.loads(info[0]) for info in known], dtype=np.float32)
    norm = np.asarray([float(info[1]) for info in known], dtype=np.float32)
    m = keypoint_metrics(pred, true, norm, spec.labels, "")
    return {"onnx_nme_mean": m["nme_mean"], "onnx_nme_median": m["nme_median"],
            "onnx_nme_share_below_0.1": m["nme_share_below_0.1"], "onnx_pixel_error_mean": m["pixel_error_mean"]}


def model_text(config: dict) -> str:
    text = MODEL_TEXT[config.get("head", "regression")].format(alpha=config["alpha"])
    if config.get("flip_average"):
        text += ", averaged with its prediction on the mirrored image (two passes in one graph)"
    return text


def output_text(spec: TaskSpec) -> str:
    return (f"`points`: (batch, {len(spec.labels)}, 2) x, y of each point, 0..1 of the input width and height; "
            "the runner returns source-image pixels")


def card_section(metrics: dict, report: dict) -> str:
    by = metrics["normalised_by"]
    norm_text = ("the distance between the outer eye corners (iBUG 68-point layout, points 36 and 45)"
                 if by == "inter-ocular" else "the image diagonal (no eye corners were labelled)")
    per_point = "\n".join(f"| {n} | {v:.4f} |" for n, v in metrics["per_point_nme_mean"].items())
    return f"""Validation NME (onnxruntime, val/): **{report["onnx_nme_mean"]:.4f}** mean, \
{report["onnx_nme_median"]:.4f} median, {report["onnx_nme_share_below_0.1"]:.1%} of images below 0.1, on \
{report["onnx_images"]} images; mean error {report["onnx_pixel_error_mean"]:.2f} px.

The metric: for each image, the distance between predicted and true point in source-image pixels,
divided by {norm_text}, averaged over the image's points (NME). Lower is better; 0.1 is about a
tenth of the eye distance.

| point | mean NME |
|---|---|
{per_point}"""

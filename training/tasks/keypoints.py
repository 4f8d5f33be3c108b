"""Train a keypoint model: fast (head on cached backbone features) or finetune (then the top of
the backbone, with augmentation that moves the points with the image)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from ...deploy.spec import TaskSpec
from ...deploy.tasks.keypoints import keypoint_metrics
from ..fit import (
    AugmentedBatches,
    EpochLine,
    export_hint,
    finetune_callbacks,
    finetune_schedule,
    new_run_dir,
    unfreeze_backbone,
)
from ..keypoint_model import build_keypoint_model, normalised, with_flip_average
from ..keypoints import augment_sample, find_point_dataset, flip_partner, load_resized
from ..metrics import save_curves_png
from ..options import TrainConfig
from ..runfolder import write_run_files


def _compile(model: keras.Model, lr, config: TrainConfig) -> None:
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay),
        loss=keras.losses.Huber(delta=0.05),
        metrics=["mae"],
    )


def _fast_head(features, head, x_train, y_train, x_val, y_val, config, run_dir, log, partner) -> dict:
    """Fit the head on cached features of the training images (plus augmented copies)."""
    t0 = time.perf_counter()
    size = x_train.shape[1]
    rng = np.random.default_rng(config.seed)
    xs, ys = [x_train], [y_train]
    for _ in range(config.augment.copies):
        pairs = [augment_sample(im, p, rng, config.augment, partner) for im, p in zip(x_train, y_train)]
        xs.append(np.stack([a for a, _ in pairs]))
        ys.append(np.stack([b for _, b in pairs]))
    f_train = features.predict(np.concatenate(xs).astype(np.float32), batch_size=32, verbose=0)
    f_val = features.predict(x_val.astype(np.float32), batch_size=32, verbose=0)
    log(f"features: {len(f_train)} train, {len(f_val)} val in {time.perf_counter() - t0:.1f} s")
    _compile(head, config.head_lr, config)
    history = head.fit(
        f_train, normalised(np.concatenate(ys), size),
        validation_data=(f_val, normalised(y_val, size)),
        epochs=config.head_epochs, batch_size=config.batch_size, verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping("val_loss", patience=max(config.patience, 20), restore_best_weights=True),
            keras.callbacks.TensorBoard(str(run_dir / "tb" / "head")),
            EpochLine("head", config.head_epochs, log, every=max(1, config.head_epochs // 10), metric="mae"),
        ],
    )
    return history.history


def _fine_tune(model, features, x_train, y_train, x_val, y_val, config, run_dir, log, partner) -> dict:
    unfreeze_backbone(features, config, log)
    size = x_train.shape[1]
    def augment(image, points, rng):
        image, points = augment_sample(image, points, rng, config.augment, partner)
        return image, normalised(points, size)

    data = AugmentedBatches(x_train, y_train, config.batch_size, augment, config.seed)
    _compile(model, finetune_schedule(config, len(data)), config)
    history = model.fit(
        data, validation_data=(x_val.astype(np.float32), normalised(y_val, size)),
        epochs=config.epochs, verbose=0, callbacks=finetune_callbacks(config, run_dir, log, "mae"),
    )
    return history.history


def evaluate_points(predict_norm: Callable[[np.ndarray], np.ndarray], data, names: tuple[str, ...]) -> dict:
    """Metrics in source pixels: predictions are mapped back with each image's resize factor."""
    size = data.images.shape[1]
    pred = predict_norm(data.images.astype(np.float32)) * size  # input pixels
    return keypoint_metrics(pred / data.scale_xy[:, None, :], data.kept.points, data.kept.norm, names,
                            data.kept.norm_kind)


def train(config: TrainConfig, log: Callable[[str], None]) -> Path:
    t_start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    names, size = config.keypoints.points, config.input_size
    train_set, val_set = find_point_dataset(config.data, names, config.val_split, config.seed)
    train, val = load_resized(train_set, size), load_resized(val_set, size)
    x_train, y_train, x_val, y_val = train.images, train.points, val.images, val.points
    skipped = train.skipped + val.skipped
    log(f"{len(x_train)} train / {len(x_val)} val images, points {', '.join(names)}, {config.keypoints.head} head"
        + (f"; {len(skipped)} unreadable images skipped" if skipped else ""))
    run_dir = new_run_dir(config)
    model, features, head = build_keypoint_model(len(names), size, config.alpha, config.weights, config.dropout,
                                                 config.keypoints.head, config.backbone)
    partner = flip_partner(names)
    history = {}
    if config.weights != "none":
        history["head"] = _fast_head(features, head, x_train, y_train, x_val, y_val, config, run_dir, log, partner)
    if config.mode == "finetune":
        history["finetune"] = _fine_tune(model, features, x_train, y_train, x_val, y_val, config, run_dir, log,
                                         partner)
    if config.keypoints.flip_average:
        model = with_flip_average(model, size, partner)
        log("the saved model averages each prediction with the one on the mirrored image")
    metrics = evaluate_points(lambda x: model.predict(x, batch_size=32, verbose=0), val, names)
    metrics.update({"train_images": len(x_train), "val_images": len(x_val), "skipped_images": [str(p) for p in skipped],
                    "train_seconds": round(time.perf_counter() - t_start, 1), "mode": config.mode,
                    "head": config.keypoints.head, "task": "keypoints", "flip_average": config.keypoints.flip_average})
    model.save(run_dir / "model.keras")
    spec = TaskSpec(kind="keypoints", input_hw=(size, size), labels=names)
    kept = val.kept
    val_rows = [(p, [json.dumps(pts.tolist()), str(n)]) for p, pts, n in zip(kept.paths, kept.points, kept.norm)]
    write_run_files(run_dir, spec, config.to_toml(), metrics, history, val_rows)
    save_curves_png(history, run_dir / "curves.png", metric="mae")
    log(f"val NME {metrics['nme_mean']:.4f} mean, {metrics['nme_median']:.4f} median, "
        f"{metrics['nme_share_below_0.1']:.1%} below 0.1 ({metrics['normalised_by']}); "
        f"{metrics['pixel_error_mean']:.2f} px mean error; {metrics['train_seconds']:.0f} s in all")
    log(f"run saved to {run_dir}")
    log(f"export it: edgevision export {run_dir} --out {export_hint(config.run_name)}")
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

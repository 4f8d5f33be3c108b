"""Train a detector: an anchor-free, FCOS-style single-shot head on MobileNetV2.

Why this head: one box per grid cell (distances to the four sides) needs no anchor shapes to
tune for a new set, and every cell near an object's centre is a positive, which gives a set of
a hundred photos many more training signals than one anchor match per object would. Features:
stride 16 (``block_13_expand_relu``) plus stride 32 (``out_relu``) upsampled and added (a
two-level FPN folded into one grid). Losses: focal loss on the class scores, GIoU on the boxes
(weighted by centre-ness), binary cross-entropy on centre-ness. The exported graph decodes the
boxes (normalised ``xyxy``) and scores ``sqrt(class * centre-ness)``; the runtime thresholds them
and runs NMS in numpy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import keras
import numpy as np
from keras import layers, ops

from ...deploy import ops as rt_ops
from ...deploy.boxdata import find_box_dataset, sample_from_json, sample_to_json
from ...deploy.spec import TaskSpec
from ...deploy.tasks import detect as detect_task
from ...deploy.tasks.detect import detection_metrics
from ..detection import augment_boxes, encode_targets, grid_centres, letterbox_sample, mosaic
from ..fit import (
    AugmentedBatches,
    EpochLine,
    export_hint,
    finetune_callbacks,
    finetune_schedule,
    new_run_dir,
    unfreeze_backbone,
)
from ..metrics import save_curves_png
from ..model import BACKBONE_NAME, build_backbone
from ..options import TrainConfig
from ..runfolder import shown_path, write_run_files

FEATURES = {16: ("block_13_expand_relu", "out_relu"),  # strides 16 and 32
            8: ("block_6_expand_relu", "block_13_expand_relu", "out_relu")}  # 8, 16 and 32
PRIOR = 0.01  # initial class probability (focal-loss paper), so background does not swamp the start
MAX_LOG_DISTANCE = 5.0  # distances up to e^5 = 148 cells


def distances(raw_reg, grid: int):
    """Head outputs -> l, t, r, b as fractions of the input side: exp(x) cells."""
    return ops.exp(ops.clip(raw_reg, -8.0, MAX_LOG_DISTANCE)) / grid


@keras.saving.register_keras_serializable(package="edgevision")
class DecodeBoxes(layers.Layer):
    """raw (n, cells, 5 + classes) -> boxes (n, cells, 4) normalised xyxy, scores (n, cells, classes)."""

    def __init__(self, grid: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.grid = int(grid)
        self.centres = (grid_centres(self.grid, self.grid) / self.grid).astype(np.float32)  # (a, 2) in 0..1

    def call(self, raw):
        d = distances(raw[..., :4], self.grid)
        c = ops.convert_to_tensor(self.centres)
        boxes = ops.concatenate([c - d[..., :2], c + d[..., 2:]], axis=-1)
        scores = ops.sqrt(ops.sigmoid(raw[..., 5:]) * ops.sigmoid(raw[..., 4:5]))
        return boxes, scores

    def get_config(self) -> dict:
        return {**super().get_config(), "grid": self.grid}


def _tower(x, width: int, name: str):
    for i in range(2):
        x = layers.SeparableConv2D(width, 3, padding="same", activation="relu", name=f"{name}_{i}")(x)
    return x


def build_detector(num_classes: int, size: int, alpha: float, weights: str, backbone_kind: str = "mobilenet_v2",
                   width: int = 128, stride: int = 16) -> tuple[keras.Model, keras.Model, int]:
    """(deploy model image -> [boxes, scores], training model image -> raw, grid side). The grid has
    ``stride`` (8 or 16) with the coarser MobileNetV2 levels added onto it; the tiny backbone: 8."""
    base = build_backbone(size, alpha, weights, backbone_kind)
    if backbone_kind == "tiny":
        encoder = keras.Model(base.input, [base.output], name=BACKBONE_NAME)
    else:
        encoder = keras.Model(base.input, [base.get_layer(n).output for n in FEATURES[stride]], name=BACKBONE_NAME)
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1, name="to_minus1_1")(inputs)
    feats = encoder(x, training=False) if weights != "none" else encoder(x)
    feats = feats if isinstance(feats, (list, tuple)) else [feats]
    x = layers.Conv2D(width, 1, name="lateral_0")(feats[0])
    for i, f in enumerate(feats[1:], 1):  # coarser levels, upsampled onto the finest grid
        up = layers.Conv2D(width, 1, name=f"lateral_{i}")(f)
        x = layers.Add()([x, layers.UpSampling2D(2 ** i, interpolation="bilinear")(up)])
    grid = x.shape[1]
    cls_t, reg_t = _tower(x, width, "cls_tower"), _tower(x, width, "box_tower")
    cls = layers.Conv2D(num_classes, 3, padding="same", name="cls",
                        bias_initializer=keras.initializers.Constant(-math.log((1 - PRIOR) / PRIOR)))(cls_t)
    reg = layers.Conv2D(4, 3, padding="same", name="box")(reg_t)
    ctr = layers.Conv2D(1, 3, padding="same", name="centreness")(reg_t)
    raw = layers.Reshape((grid * grid, 5 + num_classes), name="raw")(layers.Concatenate()([reg, ctr, cls]))
    boxes, scores = DecodeBoxes(grid, name="decode")(raw)
    boxes = layers.Identity(name="boxes")(boxes)
    scores = layers.Identity(name="scores")(scores)
    deploy = keras.Model(inputs, [boxes, scores], name="detector")
    return deploy, keras.Model(inputs, raw, name="detector_train"), grid


def detection_loss(grid: int, box_weight: float = 2.0):
    """Focal + GIoU + centre-ness loss on (n, cells, 6 + classes) targets from encode_targets."""

    def loss(y_true, y_pred):
        pos = y_true[..., 5]
        n_pos = ops.maximum(ops.sum(pos), 1.0)
        target, logits = y_true[..., 6:], y_pred[..., 5:]
        p = ops.sigmoid(logits)
        ce = ops.binary_crossentropy(target, logits, from_logits=True)
        p_t = p * target + (1 - p) * (1 - target)
        alpha = 0.25 * target + 0.75 * (1 - target)
        focal = ops.sum(alpha * (1 - p_t) ** 2 * ce) / n_pos

        d_true, d_pred = y_true[..., :4], distances(y_pred[..., :4], grid)
        w_t, h_t = d_true[..., 0] + d_true[..., 2], d_true[..., 1] + d_true[..., 3]
        w_p, h_p = d_pred[..., 0] + d_pred[..., 2], d_pred[..., 1] + d_pred[..., 3]
        lo, hi = ops.minimum(d_true, d_pred), ops.maximum(d_true, d_pred)
        inter = (lo[..., 0] + lo[..., 2]) * (lo[..., 1] + lo[..., 3])
        union = w_t * h_t + w_p * h_p - inter
        hull = (hi[..., 0] + hi[..., 2]) * (hi[..., 1] + hi[..., 3])
        giou = inter / (union + 1e-9) - (hull - union) / (hull + 1e-9)
        ctr_t = y_true[..., 4] * pos
        box = ops.sum(ctr_t * (1 - giou)) / ops.maximum(ops.sum(ctr_t), 1e-6)

        ctr_ce = ops.binary_crossentropy(y_true[..., 4:5], y_pred[..., 4:5], from_logits=True)[..., 0]
        centreness = ops.sum(ctr_ce * pos) / n_pos
        return focal + box_weight * box + centreness

    return loss


def shrink(image_rgb: np.ndarray, xyxy: np.ndarray, longest: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep training sources at most ``longest`` px on their long side (faster warps, same result)."""
    h, w = image_rgb.shape[:2]
    scale = longest / max(h, w)
    if scale >= 1:
        return image_rgb, xyxy
    small = cv2.resize(image_rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return small, xyxy * np.float32([small.shape[1] / w, small.shape[0] / h] * 2)


def load_sources(samples) -> list[np.ndarray]:
    from ...deploy.errors import UserError
    from ...deploy.images import read_image

    images = []
    for s in samples:
        bgr = read_image(s.path)
        if bgr is None:
            raise UserError(f"cannot read {s.path}")
        images.append(rt_ops.to_model_color(bgr, "RGB"))
    return images


def evaluate_detector(predict: Callable[[np.ndarray], list], val, spec: TaskSpec, score_threshold: float = 0.01
                      ) -> dict:
    """AP50 and recall at source resolution, through the runtime's own preprocessing, decoding and NMS."""
    from ...deploy.images import read_image

    preds = []
    for s in val:
        batch, placements = rt_ops.preprocess([read_image(s.path)], spec)
        preds.append(detect_task.decode(predict(batch), spec, placements, score_threshold=score_threshold)[0])
    return detection_metrics(preds, val, spec.labels, operating_score=spec.score_threshold)


def train(config: TrainConfig, log: Callable[[str], None]) -> Path:
    t_start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    labels, size = config.detect.classes, config.input_size
    folders = (config.data, *config.extra_data)  # several box sets, merged; validation scored per set too
    train, val, stats, val_source = [], [], {}, []
    for i, folder in enumerate(folders):
        t, v, st = find_box_dataset(folder, labels, config.detect.rename, config.val_split, config.seed)
        train, val, val_source = train + t, val + v, val_source + [i] * len(v)
        stats = {k: stats.get(k, 0) + n for k, n in st.items()}
    counts = np.bincount(np.concatenate([s.label for s in train]), minlength=len(labels))
    log(f"{len(train)} train / {len(val)} val images; train boxes "
        + ", ".join(f"{n} {c}" for n, c in zip(labels, counts))
        + (f"; {stats['unmapped_boxes']} boxes of other names ignored" if stats["unmapped_boxes"] else "")
        + (f"; {stats['unlabelled_images']} images without a label file skipped" if stats["unlabelled_images"] else ""))
    run_dir = new_run_dir(config)
    deploy, model, grid = build_detector(len(labels), size, config.alpha, config.weights, config.backbone,
                                         stride=config.detect.stride)
    sources = [shrink(img, s.xyxy, 2 * size) for img, s in zip(load_sources(train), train)]
    targets = [(xyxy, s.label) for (_, xyxy), s in zip(sources, train)]

    def augment(image, target, rng):
        if config.augment.mosaic and rng.random() < config.augment.mosaic:
            others = rng.integers(0, len(sources), 3)
            x, boxes, label = mosaic([image, *(sources[i][0] for i in others)],
                                     [target[0], *(targets[i][0] for i in others)],
                                     [target[1], *(targets[i][1] for i in others)], size, rng, config.augment)
        else:
            x, boxes, label = augment_boxes(image, target[0], target[1], size, rng, config.augment)
        return x, encode_targets(boxes, label, size, grid, len(labels))

    val_x, val_y = [], []
    for img, s in zip(load_sources(val), val):
        x, boxes = letterbox_sample(img, s.xyxy, size)
        val_x.append(x)
        val_y.append(encode_targets(boxes, s.label, size, grid, len(labels)))
    val_data = (np.stack(val_x).astype(np.float32), np.stack(val_y))
    data = AugmentedBatches([img for img, _ in sources], targets, config.batch_size, augment, config.seed)
    loss = detection_loss(grid)
    history = {}
    if config.weights != "none":  # the head first, on a frozen backbone
        deploy.get_layer(BACKBONE_NAME).trainable = False
        model.compile(optimizer=keras.optimizers.AdamW(config.head_lr, weight_decay=config.weight_decay), loss=loss)
        epochs = min(config.head_epochs, 30)
        if config.head_epochs > 30:
            log(f"head stage: {epochs} epochs (--head-epochs {config.head_epochs} counts passes over cached "
                "features for classifiers; here every epoch runs the backbone, so it is capped at 30)")
        callbacks = [keras.callbacks.TensorBoard(str(run_dir / "tb" / "head")),
                     EpochLine("head", epochs, log, metric=None)]
        history["head"] = model.fit(data, validation_data=val_data, epochs=epochs, verbose=0,
                                    callbacks=callbacks).history
    if config.mode == "finetune":
        unfreeze_backbone(deploy, config, log)
        model.compile(optimizer=keras.optimizers.AdamW(finetune_schedule(config, len(data)),
                                                       weight_decay=config.weight_decay), loss=loss)
        history["finetune"] = model.fit(data, validation_data=val_data, epochs=config.epochs, verbose=0,
                                        callbacks=finetune_callbacks(config, run_dir, log, None)).history
    spec = TaskSpec(kind="detect", input_hw=(size, size), labels=labels, resize="letterbox",
                    score_threshold=config.detect.score_threshold)
    predict = lambda b: [np.asarray(o) for o in deploy.predict(b, verbose=0)]  # noqa: E731
    metrics = evaluate_detector(predict, val, spec)
    if config.extra_data:  # each set's own AP50: a merged number can hide a weak one
        metrics["val_by_source"] = {}
        for i, folder in enumerate(folders):
            part = [s for s, src in zip(val, val_source) if src == i]
            if part:
                m = evaluate_detector(predict, part, spec)
                metrics["val_by_source"][str(folder)] = {"map50": m["map50"], "recall": m["recall"],
                                                         "images": len(part)}
                log(f"  {folder}: val AP50 {m['map50']:.4f}, recall {m['recall']:.3f} on {len(part)} images")
    metrics.update({"train_images": len(train), "val_images": len(val), **stats,
                    "train_seconds": round(time.perf_counter() - t_start, 1), "mode": config.mode,
                    "task": "detect", "grid": grid, "skipped_images": []})
    deploy.save(run_dir / "model.keras")
    write_run_files(run_dir, spec, config.to_toml(), metrics, history, [(s.path, [sample_to_json(s)]) for s in val])
    save_curves_png(history, run_dir / "curves.png", metric=None)
    per_class = ", ".join(f"{n} {v['ap50']:.4f}" for n, v in metrics["per_class"].items())
    log(f"val AP50 {metrics['map50']:.4f} ({per_class}); recall {metrics['recall']:.3f}, "
        f"precision {metrics['precision']:.3f} at score "
        f"{spec.score_threshold}; {metrics['train_seconds']:.0f} s in all")
    log(f"run saved to {run_dir}")
    log(f"export it: edgevision export {run_dir} --out {export_hint(config.run_name)}")
    return run_dir


# --- export and card: what this task checks and says -----------------------------------------

OUTPUTS = ("boxes", "scores")  # the order the runtime reads them in


def agreement(expected: list[np.ndarray], got: list[np.ndarray], spec: TaskSpec) -> tuple[float, str]:
    """Export parity: which cells clear the score threshold (what NMS will see)."""
    t = spec.score_threshold
    return float(((got[1] >= t) == (expected[1] >= t)).mean()), "score-threshold decisions alike"


def quality(results: list, known: list[list[str]], spec: TaskSpec) -> dict:
    """AP50, recall and precision of the ONNX model's boxes against the run's validation boxes."""
    truths = [sample_from_json(info[0]) for info in known]
    m = detection_metrics(results, truths, spec.labels, operating_score=spec.score_threshold)
    return {"onnx_map50": m["map50"], "onnx_recall": m["recall"], "onnx_precision": m["precision"],
            "onnx_per_class": m["per_class"]}


def model_text(config: dict) -> str:
    stride = int(config.get("det_stride", 16))
    levels = " + ".join(str(v) for v in (8, 16, 32) if v >= stride)
    return (f"MobileNetV2 (alpha {config['alpha']}) features at strides {levels} (added, FPN-style) + an anchor-free "
            f"FCOS-style head: per cell of the stride-{stride} grid, class scores, centre-ness and distances to the "
            "four box sides, decoded in the graph")


def output_text(spec: TaskSpec) -> str:
    return ("`boxes`: (batch, cells, 4) x0, y0, x1, y1 as 0..1 of the input, `scores`: (batch, cells, "
            f"{len(spec.labels)}); the runner keeps scores >= {spec.score_threshold}, runs NMS (IoU "
            f"{spec.iou_threshold}) and returns source-image pixels")


def check_text(out: Path, data_dir: Path, config: dict) -> str:
    rename = "".join(f" --rename '{r}'" for r in config.get("det_rename", ()))
    return (f"Check it: `edgevision eval --model {out} {data_dir}/val{rename}` prints AP50, recall and precision; "
            f"`edgevision predict --model {out} {data_dir}/val --draw shots/` draws the boxes.")


def card_section(metrics: dict, report: dict) -> str:
    rows = "\n".join(f"| {n} | {v['ap50']:.4f} | {v['true_boxes']} |"
                     for n, v in report["onnx_per_class"].items())
    by = metrics.get("val_by_source") or {}
    lines = [f"| `{shown_path(name)}` | {v['map50']:.4f} | {v['recall']:.3f} | {v['images']} |"
             for name, v in by.items()]
    by_source = ("\n\nValidation AP50 per data source (Keras, the same decoding):\n\n"
                 "| source | AP50 | recall | images |\n|---|---|---|---|\n" + "\n".join(lines)) if by else ""
    return f"""Validation AP50 (onnxruntime, val/): **{report["onnx_map50"]:.4f}** on {report["onnx_images"]} \
images; at the default score threshold {metrics["operating_score"]} the model finds \
{report["onnx_recall"]:.1%} of the true boxes
(recall) and {report["onnx_precision"]:.1%} of its boxes are right (precision).

The metric: Pascal VOC average precision at IoU 0.5 (all-point interpolation), boxes in
source-image pixels after the runtime's letterbox, decoding and NMS (IoU 0.45), scores down to 0.01.

| class | AP50 | true boxes |
|---|---|---|
{rows}{by_source}"""

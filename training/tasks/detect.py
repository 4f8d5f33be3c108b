"""Train a detector: an anchor-free, FCOS-style single-shot head on MobileNetV2.

Why this head: one box per grid cell (distances to the four sides) needs no anchor shapes to
tune for a new set, and every cell near an object's centre is a positive, which gives a set of
a hundred photos many more training signals than one anchor match per object would. Features:
stride 16 (``block_13_expand_relu``) plus stride 32 (``out_relu``) upsampled and added (a
two-level FPN folded into one grid). Losses: focal loss on the class scores, GIoU on the boxes
(weighted by centre-ness), binary cross-entropy on centre-ness. The exported graph decodes the
boxes (normalised ``xyxy``) and scores ``sqrt(class * centre-ness)``; the runtime thresholds them
and runs NMS in numpy. Photos stream from their files (training/stream.py); ``distribute`` trains on
a tf.distribute strategy, batch_size per device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from ...deploy.boxdata import BoxSample, find_box_dataset, sample_from_json, sample_to_json
from ...deploy.errors import UserError, shell_quote
from ...deploy.spec import TaskSpec
from ...deploy.tasks import detect as detect_task
from ...deploy.tasks.detect import detection_metrics
from ..detection import augment_boxes, encode_targets, grid_centres, mosaic, train_source, val_source
from ..distribute import global_batch, shard_by_data, train_on_strategy
from ..fit import (
    EpochLine,
    StopOnSignal,
    finetune_callbacks,
    finetune_schedule,
    log_line,
    log_saved,
    predict_batches,
    run_folder,
    unfreeze_backbone,
)
from ..metrics import save_curves_png
from ..model import BACKBONE_NAME, build_backbone
from ..options import TrainConfig
from ..runfolder import shown_path, write_run_files
from ..samples import placement_of
from ..stream import NumpyMap, SampleStream, open_samples

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


def _batch_sums(*values) -> list:
    """Each value summed over the global batch. Under a tf.distribute strategy each device holds a
    share of the batch: its sums are added over all devices (as FCOS counts its positives over all
    GPUs), so that the loss is normalised as on one device."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return list(values)
    return context.all_reduce(tf.distribute.ReduceOp.SUM, list(values))


def detection_loss(grid: int, box_weight: float = 2.0):
    """Focal + GIoU + centre-ness loss on (n, cells, 6 + classes) targets from encode_targets,
    normalised by the positive cells (and their centre-ness) of the whole global batch."""

    def loss(y_true, y_pred):
        pos = y_true[..., 5]
        ctr_t = y_true[..., 4] * pos
        n_pos, ctr_sum = _batch_sums(ops.sum(pos), ops.sum(ctr_t))
        n_pos = ops.maximum(n_pos, 1.0)
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
        box = ops.sum(ctr_t * (1 - giou)) / ops.maximum(ctr_sum, 1e-6)

        ctr_ce = ops.binary_crossentropy(y_true[..., 4:5], y_pred[..., 4:5], from_logits=True)[..., 0]
        centreness = ops.sum(ctr_ce * pos) / n_pos
        # One number: Keras adds the devices' gradients of it as they are (it divides only per-sample
        # losses by the devices), so each device gives its share of the global batch's loss.
        return focal + box_weight * box + centreness

    return loss


EVAL_BATCH = 16  # validation images per prediction step


def predict_val(deploy: keras.Model, val_s: SampleStream, spec: TaskSpec, score_threshold: float = 0.01) -> list:
    """Detections (source pixels) of every readable validation image, in split order, through the
    runtime's own decoding and NMS of streamed predictions (scores down to ``score_threshold``)."""
    kept, preds = iter(val_s.kept), []
    for outputs, _ in predict_batches(deploy, val_s.batches(EVAL_BATCH, keep=(0,))):  # the images only
        where = [placement_of(val_s.info[0][next(kept)]) for _ in range(len(outputs[0]))]
        preds += detect_task.decode(outputs, spec, where, score_threshold=score_threshold)
    return preds


def _as_float(images, targets):
    return tf.cast(images, tf.float32), targets


def train(config: TrainConfig, log: Callable[[str], None] = log_line) -> Path:
    """Train a detector as ``config`` says; return the run folder (training/distribute.py: on a
    multiworker cluster only the chief keeps it)."""
    return train_on_strategy(config, log, _train)


def _train(config: TrainConfig, log: Callable[[str], None], strategy, scratch: Path | None) -> Path:
    t_start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    labels, size = config.detect.classes, config.input_size
    folders = (config.data, *config.extra_data)  # several box sets, merged; validation scored per set too
    train, val, stats, val_source_of = [], [], {}, []
    for i, folder in enumerate(folders):
        t, v, st = find_box_dataset(folder, labels, config.detect.rename, config.val_split, config.seed)
        train, val, val_source_of = train + t, val + v, val_source_of + [i] * len(v)
        stats = {k: stats.get(k, 0) + n for k, n in st.items()}
    spec = TaskSpec(kind="detect", input_hw=(size, size), labels=labels, resize="letterbox",
                    score_threshold=config.detect.score_threshold)
    sources = train_source(train, 2 * size, "detect-train")  # photos kept at most twice the input size
    train_s = open_samples(sources, config.cache, config.seed, True, log)
    val_s = open_samples(val_source(val, spec, "detect-val"), config.cache, config.seed, False, log)
    skipped = train_s.skipped + val_s.skipped
    counts = np.bincount(np.concatenate([train[i].label for i in train_s.kept]), minlength=len(labels))
    log(f"{train_s.count} train / {val_s.count} val images; train boxes "
        + ", ".join(f"{n} {c}" for n, c in zip(labels, counts))
        + (f"; {stats['unmapped_boxes']} boxes of other names ignored" if stats["unmapped_boxes"] else "")
        + (f"; {stats['unlabelled_images']} images without a label file skipped" if stats["unlabelled_images"] else "")
        + (f"; {len(skipped)} unreadable images skipped" if skipped else ""))
    batch = global_batch(config.batch_size, strategy, log)
    run_dir = run_folder(config, scratch)
    with strategy.scope():
        deploy, model, grid = build_detector(len(labels), size, config.alpha, config.weights, config.backbone,
                                             stride=config.detect.stride)

    def source(i: int) -> tuple:
        found = sources.load(int(train_s.kept[i]))
        if found is None:
            raise UserError(f"{sources.paths[train_s.kept[i]]} could not be read any more (it was at the scan)")
        return found

    def augment(rng, index, image, xyxy, label):
        if config.augment.mosaic and rng.random() < config.augment.mosaic:  # three more photos, from their files
            others = [source(i) for i in rng.integers(0, train_s.count, 3)]
            x, boxes, label = mosaic([image, *(o[0] for o in others)], [xyxy, *(o[1] for o in others)],
                                     [label, *(o[2] for o in others)], size, rng, config.augment)
        else:
            x, boxes, label = augment_boxes(image, xyxy, label, size, rng, config.augment)
        return x, encode_targets(boxes, label, size, grid, len(labels))

    def targets(rng, index, x, xyxy, label, placement):
        return x, encode_targets(xyxy, label, size, grid, len(labels))

    pairs = (("uint8", (size, size, 3)), ("float32", (grid * grid, 6 + len(labels))))
    devices = strategy.num_replicas_in_sync

    def data(epochs: int, first: int = 0) -> tuple:
        ds, steps = train_s.epochs(batch, config.seed, epochs, NumpyMap(augment, pairs), devices, first)
        return shard_by_data(ds.map(_as_float)), steps

    val_data = shard_by_data(val_s.batches(batch, NumpyMap(targets, pairs), devices).map(_as_float))
    loss = detection_loss(grid)
    history, epochs = {}, 0
    if config.weights != "none":  # the head first, on a frozen backbone
        deploy.get_layer(BACKBONE_NAME).trainable = False
        with strategy.scope():
            model.compile(optimizer=keras.optimizers.AdamW(config.head_lr, weight_decay=config.weight_decay),
                          loss=loss)
        epochs = min(config.head_epochs, 30)
        if config.head_epochs > 30:
            log(f"head stage: {epochs} epochs (--head-epochs {config.head_epochs} counts passes over cached "
                "features for classifiers; here every epoch runs the backbone, so it is capped at 30)")
        callbacks = [keras.callbacks.TensorBoard(str(run_dir / "tb" / "head")),
                     EpochLine("head", epochs, log, metric=None), StopOnSignal()]
        train_ds, steps = data(epochs)
        history["head"] = model.fit(train_ds, validation_data=val_data, epochs=epochs, steps_per_epoch=steps,
                                    shuffle=False, verbose=0, callbacks=callbacks).history
    if config.mode == "finetune":
        unfreeze_backbone(deploy, config, log)
        train_ds, steps = data(config.epochs, first=epochs)  # new draws after the head stage's
        with strategy.scope():
            model.compile(optimizer=keras.optimizers.AdamW(finetune_schedule(config, steps),
                                                           weight_decay=config.weight_decay), loss=loss)
        history["finetune"] = model.fit(train_ds, validation_data=val_data, epochs=config.epochs,
                                        steps_per_epoch=steps, shuffle=False, verbose=0,
                                        callbacks=finetune_callbacks(config, run_dir, log, None)).history
    preds = predict_val(deploy, val_s, spec)
    truths: list[BoxSample] = [val[i] for i in val_s.kept]
    metrics = detection_metrics(preds, truths, spec.labels, operating_score=spec.score_threshold)
    if config.extra_data:  # each set's own AP50: a merged number can hide a weak one
        metrics["val_by_source"] = {}
        kept_source = [val_source_of[i] for i in val_s.kept]
        for i, folder in enumerate(folders):
            mine = [k for k, src in enumerate(kept_source) if src == i]
            if mine:
                m = detection_metrics([preds[k] for k in mine], [truths[k] for k in mine], spec.labels,
                                      operating_score=spec.score_threshold)
                metrics["val_by_source"][str(folder)] = {"map50": m["map50"], "recall": m["recall"],
                                                         "images": len(mine)}
                log(f"  {folder}: val AP50 {m['map50']:.4f}, recall {m['recall']:.3f} on {len(mine)} images")
    metrics.update({"train_images": train_s.count, "val_images": val_s.count, **stats,
                    "train_seconds": round(time.perf_counter() - t_start, 1), "mode": config.mode,
                    "task": "detect", "grid": grid, "skipped_images": [str(p) for p in skipped],
                    "devices": strategy.num_replicas_in_sync})
    deploy.save(run_dir / "model.keras")
    write_run_files(run_dir, spec, config.to_toml(), metrics, history, [(s.path, [sample_to_json(s)]) for s in truths])
    save_curves_png(history, run_dir / "curves.png", metric=None)
    per_class = ", ".join(f"{n} {v['ap50']:.4f}" for n, v in metrics["per_class"].items())
    log(f"val AP50 {metrics['map50']:.4f} ({per_class}); recall {metrics['recall']:.3f}, "
        f"precision {metrics['precision']:.3f} at score "
        f"{spec.score_threshold}; {metrics['train_seconds']:.0f} s in all")
    log_saved(run_dir, config, scratch, log, metrics)
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
    rename = "".join(f" --rename {shell_quote(r)}" for r in config.get("det_rename", ()))
    model, val = shell_quote(out), shell_quote(Path(data_dir) / "val")
    return (f"Check it: `edgevision eval --model {model} {val}{rename}` prints AP50, recall and precision; "
            f"`edgevision predict --model {model} {val} --draw shots/` draws the boxes.")


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

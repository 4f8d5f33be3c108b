"""Train a segmenter: MobileNetV2 encoder with U-Net-style skips (strides 4, 8, 16) and a light
decoder; class probabilities at stride 4, which the runner upsamples once to the source size.
Loss: cross-entropy plus Dice on the foreground classes (people cover ~18% of the pixels).
Images and masks stream from their files (training/stream.py); ``distribute`` trains on a
tf.distribute strategy, batch_size per device."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from ...deploy.images import read_image
from ...deploy.spec import TaskSpec
from ...deploy.tasks import segment as segment_task
from ...deploy.tasks.segment import iou_metrics
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
from ..runfolder import write_run_files
from ..samples import placement_of
from ..segmentation import SegSet, augment_pair, find_seg_dataset, object_crop, seg_source
from ..stream import NumpyMap, SampleStream, open_samples

SKIPS = ("block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu", "block_16_project")  # s4..s32
OUTPUT_STRIDE = 4


def build_segmenter(num_classes: int, size: int, alpha: float, weights: str, dropout: float,
                    backbone_kind: str = "mobilenet_v2", head: str = "unet") -> tuple:
    """(model image -> probs (n, s/4, s/4, classes), encoder). ``head``: 'unet' (skips at strides
    16, 8, 4 into a light decoder) or 'lraspp' (DeepLab-lite, as in MobileNetV3's LR-ASPP: the
    stride-16 features gated by their global average, upsampled once and joined with stride 4).
    The tiny backbone (tests) gives strides 4 and 8 only."""
    base = build_backbone(size, alpha, weights, backbone_kind)
    if backbone_kind == "tiny":
        levels = [base.layers[2].output, base.layers[3].output]  # its stride-4 and stride-8 convolutions
    else:  # LR-ASPP stops at stride 16: the stride-32 layers would get no gradient
        levels = [base.get_layer(n).output for n in (SKIPS[:3] if head == "lraspp" else SKIPS)]
    encoder = keras.Model(base.input, levels, name=BACKBONE_NAME)
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1, name="to_minus1_1")(inputs)
    skips = encoder(x, training=False) if weights != "none" else encoder(x)
    if head == "lraspp":
        high = skips[-1]  # stride 16 (stride 8 for the tiny backbone)
        x = layers.Conv2D(128, 1, use_bias=False)(high)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        gate = layers.GlobalAveragePooling2D(keepdims=True)(high)
        gate = layers.Conv2D(128, 1, activation="sigmoid")(gate)
        x = layers.Multiply()([x, gate])
        x = layers.UpSampling2D(skips[0].shape[1] // x.shape[1], interpolation="bilinear")(x)
        low = layers.Conv2D(48, 1, activation="relu")(skips[0])
        x = layers.Concatenate()([x, low])
        x = layers.SeparableConv2D(96, 3, padding="same", activation="relu")(x)
        x = layers.SeparableConv2D(96, 3, padding="same", activation="relu")(x)
        x = layers.Dropout(dropout)(x)
        x = layers.Conv2D(num_classes, 1, name="logits")(x)
        return keras.Model(inputs, layers.Softmax(name="probs")(x), name="segmenter"), encoder
    x = skips[-1]
    for skip, filters in zip(reversed(skips[:-1]), (96, 64, 48)):  # s16, s8, s4
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = layers.Concatenate()([x, skip])
        x = layers.SeparableConv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Conv2D(num_classes, 1, name="logits")(x)
    return keras.Model(inputs, layers.Softmax(name="probs")(x), name="segmenter"), encoder


@keras.saving.register_keras_serializable(package="edgevision")
def ce_dice_loss(y_true, y_pred):
    """Sparse cross-entropy plus (1 - soft Dice) averaged over the foreground classes, per image
    (n,): Keras averages it over the batch (and, under a tf.distribute strategy, over the devices'
    shares of it)."""
    classes = ops.shape(y_pred)[-1]
    labels = ops.cast(y_true, "int32")
    ce = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, y_pred), axis=(1, 2))  # (n,)
    onehot = ops.one_hot(labels, classes)[..., 1:]
    probs = y_pred[..., 1:]
    inter = ops.sum(onehot * probs, axis=(1, 2))
    total = ops.sum(onehot + probs, axis=(1, 2))
    dice = (2 * inter + 1.0) / (total + 1.0)  # (n, classes - 1)
    return ce + (1.0 - ops.mean(dice, axis=1))


def downsample_mask(mask: np.ndarray) -> np.ndarray:
    """(s, s) -> (s/4, s/4) class ids, the model's output grid."""
    size = mask.shape[0] // OUTPUT_STRIDE
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


EVAL_BATCH = 16  # validation images per prediction step


class _Sized:
    """A sized iterable of class maps made batch by batch (iou_metrics reads each once, in order)."""

    def __init__(self, count: int, items: Callable[[], Iterator[np.ndarray]]) -> None:
        self.count, self.items = count, items

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.items()


def evaluate_masks(model: keras.Model, val_s: SampleStream, val: SegSet, spec: TaskSpec) -> dict:
    """IoU at source resolution, through the runtime's own decode (one upsampling per image) of
    streamed predictions; each source mask is read when its prediction is compared."""
    placements = val_s.info[1]

    def class_maps() -> Iterator[np.ndarray]:
        kept = iter(val_s.kept)
        for (probs,), _ in predict_batches(model, val_s.batches(EVAL_BATCH)):
            where = [placement_of(placements[next(kept)]) for _ in range(len(probs))]
            yield from (r.class_map for r in segment_task.decode([probs], spec, where))

    return iou_metrics(_Sized(val_s.count, class_maps), (source_mask(val, val_s, i) for i in val_s.kept), spec.labels)


def source_mask(data: SegSet, stream: SampleStream, i: int) -> np.ndarray:
    """Sample i's mask at source size (YOLO polygons drawn at the size the scan saw)."""
    return data.masks.refs[i].load(placement_of(stream.info[1][i]).source_hw)


def _compile(model: keras.Model, lr, config: TrainConfig) -> None:
    model.compile(optimizer=keras.optimizers.AdamW(lr, weight_decay=config.weight_decay), loss=ce_dice_loss,
                  metrics=["accuracy"])


def _as_float(images, masks):
    return tf.cast(images, tf.float32), masks


def train(config: TrainConfig, log: Callable[[str], None] = log_line) -> Path:
    """Train a segmenter as ``config`` says; return the run folder (training/distribute.py: on a
    multiworker cluster only the chief keeps it)."""
    return train_on_strategy(config, log, _train)


def _train(config: TrainConfig, log: Callable[[str], None], strategy, scratch: Path | None) -> Path:
    t_start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    labels, size = config.segment.classes, config.input_size
    yolo = {cid: i + 1 for i, cid in enumerate(config.segment.yolo_classes)}
    train, val = find_seg_dataset(config.data, yolo, config.val_split, config.seed, labels)
    spec = TaskSpec(kind="segment", input_hw=(size, size), labels=labels)
    crop_p = config.augment.object_crop  # views around one person are cut from the photos at twice the input size
    source_spec = TaskSpec(kind="segment", input_hw=(2 * size, 2 * size), labels=labels) if crop_p else spec
    train_s = open_samples(seg_source(train, source_spec, "segment-train"), config.cache, config.seed, True, log)
    val_s = open_samples(seg_source(val, spec, "segment-val"), config.cache, config.seed, False, log)
    skipped = train_s.skipped + val_s.skipped
    share = float(train_s.info[0][train_s.kept].mean())
    log(f"{train_s.count} train / {val_s.count} val images, classes {', '.join(labels)}; "
        f"foreground {share:.0%} of pixels" + (f"; {len(skipped)} unreadable images skipped" if skipped else ""))
    if crop_p:
        log(f"object crops: {crop_p:.0%} of training views are cut around one foreground object")
    batch = global_batch(config.batch_size, strategy, log)
    run_dir = run_folder(config, scratch)
    with strategy.scope():
        model, encoder = build_segmenter(len(labels), size, config.alpha, config.weights, config.dropout,
                                         config.backbone, config.segment.head)
    out = size // OUTPUT_STRIDE

    def augment(rng, index, image, mask, *info):
        if crop_p and rng.random() < crop_p:
            image, mask = object_crop(image, mask, rng, size)
        elif image.shape[0] != size:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
        image, mask = augment_pair(image, mask, rng, config.augment)
        return image, downsample_mask(mask)

    def plain(rng, index, image, mask, *info):
        return image, downsample_mask(mask)

    pairs = (("uint8", (size, size, 3)), ("uint8", (out, out)))
    devices = strategy.num_replicas_in_sync

    def data(epochs: int, first: int = 0) -> tuple:
        ds, steps = train_s.epochs(batch, config.seed, epochs, NumpyMap(augment, pairs), devices, first)
        return shard_by_data(ds.map(_as_float)), steps

    val_data = shard_by_data(val_s.batches(batch, NumpyMap(plain, pairs), devices).map(_as_float))
    history, epochs = {}, 0
    if config.weights != "none":  # the decoder first, on a frozen encoder
        encoder.trainable = False
        with strategy.scope():
            _compile(model, config.head_lr, config)
        epochs = min(config.head_epochs, 20)
        if config.head_epochs > 20:
            log(f"decoder stage: {epochs} epochs (--head-epochs {config.head_epochs} counts passes over cached "
                "features for classifiers; here every epoch runs the backbone, so it is capped at 20)")
        train_ds, steps = data(epochs)
        history["head"] = model.fit(train_ds, validation_data=val_data, epochs=epochs, steps_per_epoch=steps,
                                    shuffle=False, verbose=0,
                                    callbacks=[keras.callbacks.TensorBoard(str(run_dir / "tb" / "head")),
                                               EpochLine("decoder", epochs, log), StopOnSignal()]).history
    if config.mode == "finetune":
        unfreeze_backbone(model, config, log)
        train_ds, steps = data(config.epochs, first=epochs)  # new draws after the decoder stage's
        with strategy.scope():
            _compile(model, finetune_schedule(config, steps), config)
        history["finetune"] = model.fit(train_ds, validation_data=val_data, epochs=config.epochs,
                                        steps_per_epoch=steps, shuffle=False, verbose=0,
                                        callbacks=finetune_callbacks(config, run_dir, log, "accuracy")).history
    metrics = evaluate_masks(model, val_s, val, spec)
    metrics.update({"train_images": train_s.count, "val_images": val_s.count, "foreground_share": share,
                    "train_seconds": round(time.perf_counter() - t_start, 1), "mode": config.mode,
                    "task": "segment", "skipped_images": [str(p) for p in skipped],
                    "devices": strategy.num_replicas_in_sync})
    model.save(run_dir / "model.keras")
    mask_dir = run_dir / "val_masks"
    mask_dir.mkdir()
    rows = []
    for n, i in enumerate(val_s.kept):
        cv2.imwrite(str(mask_dir / f"{n}.png"), source_mask(val, val_s, i))
        rows.append((val.images[i], [str(mask_dir / f"{n}.png")]))
    write_run_files(run_dir, spec, config.to_toml(), metrics, history, rows)
    save_curves_png(history, run_dir / "curves.png")
    log(f"val mean IoU {metrics['miou']:.4f} ("
        + ", ".join(f"{n} {v:.4f}" for n, v in metrics["iou"].items()) + f"); {metrics['train_seconds']:.0f} s in all")
    log_saved(run_dir, config, scratch, log, metrics)
    return run_dir


# --- export and card: what this task checks and says -----------------------------------------

OUTPUTS = ("probs",)
MODEL_TEXT = {
    "unet": "MobileNetV2 (alpha {alpha}) encoder + U-Net-style decoder (skips at strides 4, 8, 16), "
            "class probabilities at stride 4",
    "lraspp": "MobileNetV2 (alpha {alpha}) encoder to stride 16 + an LR-ASPP (DeepLab-lite) head: the stride-16 "
              "features gated by their global average, upsampled once and joined with stride-4 features; class "
              "probabilities at stride 4",
}


def agreement(expected: list[np.ndarray], got: list[np.ndarray], spec: TaskSpec) -> tuple[float, str]:
    """Export parity: the class of every output cell."""
    return float((got[0].argmax(-1) == expected[0].argmax(-1)).mean()), "cells of the same class"


def quality(results: list, known: list[list[str]], spec: TaskSpec) -> dict:
    """IoU of the ONNX model's masks (source size) against the run's validation masks."""
    masks = [read_image(Path(info[0]), cv2.IMREAD_UNCHANGED) for info in known]
    m = iou_metrics([r.class_map for r in results], masks, spec.labels)
    return {"onnx_miou": m["miou"], "onnx_iou": m["iou"], "onnx_per_image_miou": m["per_image_miou"]}


def model_text(config: dict) -> str:
    return MODEL_TEXT["lraspp" if config.get("seg_head") == "lraspp" else "unet"].format(alpha=config["alpha"])


def output_text(spec: TaskSpec) -> str:
    return (f"`probs`: (batch, {spec.input_hw[0] // 4}, {spec.input_hw[1] // 4}, {len(spec.labels)}) class "
            "probabilities; the runner upsamples them once to a class map at source size")


def card_section(metrics: dict, report: dict) -> str:
    rows = "\n".join(f"| {n} | {v:.4f} |" for n, v in report["onnx_iou"].items())
    per_image = ("" if "onnx_per_image_miou" not in report else
                 f" Averaged per image instead (each photo's own mean IoU, so that a few large photos cannot "
                 f"hide many small failures): **{report['onnx_per_image_miou']:.4f}**.")
    return f"""Validation mean IoU (onnxruntime, val/): **{report["onnx_miou"]:.4f}** on {report["onnx_images"]} images,
masks at source resolution (intersections and unions summed over the set); foreground is
{metrics["foreground_share"]:.0%} of the training pixels.{per_image}

| class | IoU |
|---|---|
{rows}"""

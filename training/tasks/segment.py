"""Train a segmenter: MobileNetV2 encoder with U-Net-style skips (strides 4, 8, 16) and a light
decoder; class probabilities at stride 4, which the runner upsamples once to the source size.
Loss: cross-entropy plus Dice on the foreground classes (people cover ~18% of the pixels)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2
import keras
import numpy as np
from keras import layers, ops

from ...deploy import ops as rt_ops
from ...deploy.spec import TaskSpec
from ...deploy.tasks import segment as segment_task
from ...deploy.tasks.segment import iou_metrics
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
from ..runfolder import write_run_files
from ..segmentation import augment_pair, find_seg_dataset, load_resized, object_crop

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
    """Sparse cross-entropy plus (1 - soft Dice) averaged over the foreground classes."""
    classes = ops.shape(y_pred)[-1]
    labels = ops.cast(y_true, "int32")
    ce = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, y_pred))
    onehot = ops.one_hot(labels, classes)[..., 1:]
    probs = y_pred[..., 1:]
    inter = ops.sum(onehot * probs, axis=(1, 2))
    total = ops.sum(onehot + probs, axis=(1, 2))
    dice = (2 * inter + 1.0) / (total + 1.0)
    return ce + (1.0 - ops.mean(dice))


def downsample_mask(mask: np.ndarray) -> np.ndarray:
    """(s, s) -> (s/4, s/4) class ids, the model's output grid."""
    size = mask.shape[0] // OUTPUT_STRIDE
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def evaluate_masks(predict: Callable[[np.ndarray], np.ndarray], val, spec: TaskSpec) -> dict:
    """IoU at source resolution, through the runtime's own decode (one upsampling per image)."""
    from ...deploy.images import read_image

    preds = []
    for path in val.images:
        frame = read_image(path)
        batch, placements = rt_ops.preprocess([frame], spec)
        preds.append(segment_task.decode([predict(batch)], spec, placements)[0].class_map)
    return iou_metrics(preds, list(val.masks), spec.labels)


def train(config: TrainConfig, log: Callable[[str], None]) -> Path:
    t_start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    labels, size = config.segment.classes, config.input_size
    yolo = {cid: i + 1 for i, cid in enumerate(config.segment.yolo_classes)}
    train, val = find_seg_dataset(config.data, yolo, config.val_split, config.seed, labels)
    x_train, m_train = load_resized(train, size)
    x_val, m_val = load_resized(val, size)
    share = float(np.mean([(m > 0).mean() for m in train.masks]))
    log(f"{len(x_train)} train / {len(x_val)} val images, classes {', '.join(labels)}; "
        f"foreground {share:.0%} of pixels")
    run_dir = new_run_dir(config)
    model, encoder = build_segmenter(len(labels), size, config.alpha, config.weights, config.dropout,
                                     config.backbone, config.segment.head)
    val_data = (x_val.astype(np.float32), np.stack([downsample_mask(m) for m in m_val]))
    crop_p = config.augment.object_crop
    if crop_p:  # views around one person are cut from the photos at twice the input size
        x_src, m_src = load_resized(train, 2 * size)
        log(f"object crops: {crop_p:.0%} of training views are cut around one foreground object")
    else:
        x_src, m_src = x_train, m_train

    def augment(image, mask, rng):
        if crop_p and rng.random() < crop_p:
            image, mask = object_crop(image, mask, rng, size)
        elif image.shape[0] != size:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
        image, mask = augment_pair(image, mask, rng, config.augment)
        return image, downsample_mask(mask)

    data = AugmentedBatches(x_src, m_src, config.batch_size, augment, config.seed)
    history = {}
    if config.weights != "none":  # the decoder first, on a frozen encoder
        encoder.trainable = False
        model.compile(optimizer=keras.optimizers.AdamW(config.head_lr, weight_decay=config.weight_decay),
                      loss=ce_dice_loss, metrics=["accuracy"])
        epochs = min(config.head_epochs, 20)
        if config.head_epochs > 20:
            log(f"decoder stage: {epochs} epochs (--head-epochs {config.head_epochs} counts passes over cached "
                "features for classifiers; here every epoch runs the backbone, so it is capped at 20)")
        history["head"] = model.fit(data, validation_data=val_data, epochs=epochs, verbose=0, callbacks=[
            keras.callbacks.TensorBoard(str(run_dir / "tb" / "head")), EpochLine("decoder", epochs, log)]).history
    if config.mode == "finetune":
        unfreeze_backbone(model, config, log)
        model.compile(optimizer=keras.optimizers.AdamW(finetune_schedule(config, len(data)),
                                                       weight_decay=config.weight_decay),
                      loss=ce_dice_loss, metrics=["accuracy"])
        history["finetune"] = model.fit(data, validation_data=val_data, epochs=config.epochs, verbose=0,
                                        callbacks=finetune_callbacks(config, run_dir, log, "accuracy")).history
    spec = TaskSpec(kind="segment", input_hw=(size, size), labels=labels)
    metrics = evaluate_masks(lambda b: model.predict(b, verbose=0), val, spec)
    metrics.update({"train_images": len(x_train), "val_images": len(x_val), "foreground_share": share,
                    "train_seconds": round(time.perf_counter() - t_start, 1), "mode": config.mode,
                    "task": "segment", "skipped_images": []})
    model.save(run_dir / "model.keras")
    mask_dir = run_dir / "val_masks"
    mask_dir.mkdir()
    rows = []
    for i, (path, mask) in enumerate(zip(val.images, val.masks)):
        cv2.imwrite(str(mask_dir / f"{i}.png"), mask)
        rows.append((path, [str(mask_dir / f"{i}.png")]))
    write_run_files(run_dir, spec, config.to_toml(), metrics, history, rows)
    save_curves_png(history, run_dir / "curves.png")
    log(f"val mean IoU {metrics['miou']:.4f} ("
        + ", ".join(f"{n} {v:.4f}" for n, v in metrics["iou"].items()) + f"); {metrics['train_seconds']:.0f} s in all")
    log(f"run saved to {run_dir}")
    log(f"export it: edgevision export {run_dir} --out {export_hint(config.run_name)}")
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
    masks = [cv2.imread(info[0], cv2.IMREAD_UNCHANGED) for info in known]
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

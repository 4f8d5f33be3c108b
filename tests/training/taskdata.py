"""Tiny synthetic data sets in each task's layout, and tiny training configs for them (no TensorFlow
here; the training tests and their subprocesses import it)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

DOT_HW = (48, 72)  # non-square frames
VOC = ("<annotation><size><width>{w}</width><height>{h}</height></size><object><name>box</name><bndbox>"
       "<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>")


def dot_frame(x: float, y: float) -> np.ndarray:
    image = np.full((*DOT_HW, 3), 30, np.uint8)
    cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    return image


def dot_dataset(root: Path, n: int = 60, seed: int = 0) -> Path:
    """Keypoints: images/*.png with one bright dot, labels.csv with its (x, y)."""
    rng = np.random.default_rng(seed)
    h, w = DOT_HW
    (root / "images").mkdir(parents=True)
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "dot_x", "dot_y"])
        for i in range(n):
            x, y = rng.uniform(8, w - 8), rng.uniform(8, h - 8)
            cv2.imwrite(str(root / "images" / f"{i}.png"), dot_frame(x, y))
            writer.writerow([f"{i}.png", f"{x:.1f}", f"{y:.1f}"])
    return root


def blobs(root: Path, n: int = 24, seed: int = 0) -> Path:
    """Segmentation: images/*.png with a coloured disc on noise, masks/*.png of it."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image = np.clip(rng.normal(60, 20, (48, 72, 3)), 0, 255).astype(np.uint8)
        mask = np.zeros((48, 72), np.uint8)
        cx, cy = int(rng.integers(15, 57)), int(rng.integers(12, 36))
        cv2.circle(mask, (cx, cy), 10, 1, -1)
        image[mask == 1] = (40, 200, 240)
        cv2.imwrite(str(root / "images" / f"{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{i}.png"), mask)
    return root


def rectangles(root: Path, n: int, seed: int, hw: tuple[int, int] = (72, 96)) -> tuple[Path, list]:
    """Detection: noise frames, each with one bright rectangle of random size and place, in VOC XML."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    h, w = hw
    boxes = []
    for i in range(n):
        image = np.clip(rng.normal(90, 35, (h, w, 3)), 0, 255).astype(np.uint8)
        bw, bh = int(rng.integers(16, 34)), int(rng.integers(16, 34))
        x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        image[y0 : y0 + bh, x0 : x0 + bw] = (30, 220, 250)
        cv2.imwrite(str(root / f"{i}.png"), image)
        (root / f"{i}.xml").write_text(VOC.format(w=w, h=h, x0=x0 + 1, y0=y0 + 1, x1=x0 + bw, y1=y0 + bh))
        boxes.append((x0, y0, x0 + bw, y0 + bh))
    return root, boxes


def task_data(task: str, root: Path, n: int = 24) -> tuple[Path, Path]:
    """(data folder, the file of a training image made unreadable) for a task's tiny set."""
    if task == "keypoints":
        data = dot_dataset(root, n)
        broken = data / "images" / "0.png"
    elif task == "segment":
        data = blobs(root, n)
        broken = data / "images" / "0.png"
    else:
        rectangles(root / "train", n, seed=0)
        rectangles(root / "val", max(4, n // 4), seed=1)
        data, broken = root, root / "train" / "0.png"
    broken.write_bytes(b"\x89PNG broken")
    return data, broken


def tiny_config(task: str, data: Path, runs: Path, **overrides) -> dict:
    """A few seconds of training of the tiny backbone, as make_config's values."""
    base = dict(data=str(data), runs_dir=str(runs), task=task, backbone="tiny", weights="none", mode="finetune",
                input_size=32, epochs=3, lr=3e-3, batch_size=8, patience=0, seed=0, color=0.0, grayscale=0.0,
                dropout=0.0)
    if task == "keypoints":
        base.update(points=("dot",), head="heatmap", rotation_deg=0.0, zoom=0.0, translate=0.1)
    elif task == "segment":
        base.update(input_size=64, lr=1e-2, epochs=5)
    else:
        base.update(det_classes=("box",), input_size=64, zoom=0.2, translate=0.1, mosaic=0.5)
    return {**base, **overrides}


def count_reads(monkeypatch) -> Counter:
    """A count, per file, of the images decoded from here on (deploy.images.read_image reads every
    image file through np.fromfile)."""
    reads: Counter = Counter()
    real = np.fromfile

    def counting(file, *args, **kwargs):
        reads[str(file)] += 1
        return real(file, *args, **kwargs)

    monkeypatch.setattr(np, "fromfile", counting)
    return reads


def streamed_every_epoch(reads: Counter, run_dir: Path, epochs: int) -> bool:
    """Whether every training image was decoded at the scan and again in each of ``epochs``
    (read from its file on demand, not held in memory); val.tsv names the validation images."""
    val = {line.split("\t")[0] for line in (run_dir / "val.tsv").read_text().splitlines()}
    train = [path for path in reads if path not in val]
    return bool(train) and all(reads[path] >= 1 + epochs for path in train)


def random_mobilenet_weights(path: Path, input_size: int = 32) -> Path:
    """A MobileNetV2 (alpha 0.35, no top) weights file with seeded random weights, each BatchNorm's
    statistics set from one batch of random images (with Keras' defaults the random net's features
    vanish, ~1e-12, and a head would learn nothing from them). Imports Keras when called."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(input_size, input_size, 3), include_top=False, alpha=0.35,
                                           weights=None)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become this batch's
    model(np.random.default_rng(0).uniform(-1, 1, (32, input_size, input_size, 3)).astype(np.float32), training=True)
    model.save_weights(path)
    return path

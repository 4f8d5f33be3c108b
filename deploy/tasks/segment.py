"""Task ``segment``: a class per pixel. Result type, decode, draw (tint or background replacement),
summary, the IoU metric."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from ..draw import PALETTE
from ..errors import UserError
from ..images import read_image
from ..ops import Placement, as_probs
from ..spec import Headline

KIND = "segment"
HEADLINE = Headline("miou", "mean IoU", higher_is_better=True)


@dataclass(frozen=True)
class Segmentation:
    labels: tuple[str, ...]
    class_map: np.ndarray  # (h, w) uint8 class ids at source resolution
    kind: ClassVar[str] = KIND

    def __post_init__(self) -> None:
        cm = np.asarray(self.class_map)
        if cm.ndim != 2:
            raise ValueError(f"class_map must have shape (h, w), got {cm.shape}")
        if cm.dtype != np.uint8:
            raise ValueError(f"class_map must be uint8, got {cm.dtype}")
        object.__setattr__(self, "class_map", cm)

    def fractions(self) -> dict[str, float]:
        counts = np.bincount(self.class_map.ravel(), minlength=len(self.labels))[: len(self.labels)]
        return {n: round(float(c) / self.class_map.size, 6) for n, c in zip(self.labels, counts)}

    def to_dict(self) -> dict:
        return {"task": KIND, "size_hw": list(self.class_map.shape), "fractions": self.fractions()}

    def draw(self, frame: np.ndarray, alpha: float = 0.45) -> None:
        """Tint every pixel of a foreground class; class 0 (background) is left as it is."""
        if self.class_map.shape != frame.shape[:2]:
            raise ValueError(f"class_map {self.class_map.shape} does not match the frame {frame.shape[:2]}")
        colors = PALETTE[np.arange(len(self.labels)) % len(PALETTE)].copy()
        colors[0] = 0
        mask = self.class_map > 0
        if mask.any():
            tinted = colors[self.class_map]
            frame[mask] = (frame[mask] * (1 - alpha) + tinted[mask] * alpha).astype(np.uint8)


def decode(outputs: list[np.ndarray], spec, placements: list[Placement], **options: float | None
           ) -> list[Segmentation]:
    probs = as_probs(outputs[0], spec)
    c = len(spec.labels)
    if probs.ndim != 4 or probs.shape[3] != c:
        raise ValueError(f"a segmenter must output (n, h, w, {c}), got {probs.shape}")
    results = []
    ih, iw = spec.input_hw
    for p, placement in zip(probs, placements):
        # Crop the letterbox padding (in output cells), then upsample once to the source size.
        sy, sx = p.shape[0] / ih, p.shape[1] / iw
        (px, py), (gx, gy) = placement.pad_xy, placement.scale_xy
        sh, sw = placement.source_hw
        y0, x0 = int(round(py * sy)), int(round(px * sx))
        y1, x1 = int(round((py + sh * gy) * sy)), int(round((px + sw * gx) * sx))
        p = p[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
        if c == 2:  # one bilinear channel (foreground margin) is enough for two classes
            margin = np.ascontiguousarray(p[..., 1] - p[..., 0])
            class_map = (cv2.resize(margin, (sw, sh), interpolation=cv2.INTER_LINEAR) > 0).astype(np.uint8)
        else:
            up = cv2.resize(np.ascontiguousarray(p), (sw, sh), interpolation=cv2.INTER_LINEAR)
            class_map = up.reshape(sh, sw, c).argmax(axis=2).astype(np.uint8)
        results.append(Segmentation(spec.labels, class_map))
    return results


def summary(result: dict) -> str:
    return " ".join(f"{n} {v:.0%}" for n, v in result["fractions"].items())


def replace_background(frame: np.ndarray, result: Segmentation, background: str | np.ndarray) -> None:
    """Where the class map is 0, put a blur of the frame, a colour, or an image (resized to the frame).

    ``background`` is 'blur', an 'R,G,B' colour, or a BGR image array."""
    if result.class_map.shape != frame.shape[:2]:
        raise ValueError(f"class_map {result.class_map.shape} does not match the frame {frame.shape[:2]}")
    keep = result.class_map > 0
    if isinstance(background, np.ndarray):
        fill = cv2.resize(background, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_AREA)
    elif background == "blur":
        k = max(3, (min(frame.shape[:2]) // 12) | 1)  # an odd kernel, about a twelfth of the frame
        fill = cv2.GaussianBlur(frame, (k, k), 0)
    else:
        r, g, b = (int(v) for v in background.split(","))
        fill = np.empty_like(frame)
        fill[:] = (b, g, r)
    frame[~keep] = fill[~keep]


def parse_background(text: str) -> str | np.ndarray:
    """--background: 'blur', 'R,G,B' (0..255 each) or an image file."""
    if text == "blur":
        return text
    if re.fullmatch(r"\s*\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}\s*", text):
        if all(0 <= int(v) <= 255 for v in text.split(",")):
            return text
        raise UserError(f"--background colour values must be 0..255, got {text}")
    image = read_image(Path(text)) if Path(text).is_file() else None
    if image is None:
        raise UserError(f"--background takes blur, R,G,B or an image file; cannot read {text!r}")
    return image


def iou_metrics(pred: list[np.ndarray], true: list[np.ndarray], labels: tuple[str, ...]) -> dict:
    """IoU per class over the whole set (intersections and unions summed over images) and their mean
    (``miou``); also the mean over images of each image's own mean IoU (``per_image_miou``), so that a
    few large photos cannot hide many small failures; and the pixels of each class in the masks
    (``true_pixels``) and in the predictions (``predicted_pixels``): a class never predicted shows there."""
    inter = np.zeros(len(labels))
    union = np.zeros(len(labels))
    true_px = np.zeros(len(labels), np.int64)
    pred_px = np.zeros(len(labels), np.int64)
    per_image = []
    for p, t in zip(pred, true):
        if p.shape != t.shape:
            raise ValueError(f"prediction {p.shape} and mask {t.shape} differ in size")
        i = np.array([np.logical_and(p == c, t == c).sum() for c in range(len(labels))], np.float64)
        u = np.array([np.logical_or(p == c, t == c).sum() for c in range(len(labels))], np.float64)
        inter += i
        union += u
        true_px += np.bincount(t.ravel(), minlength=len(labels))[: len(labels)]
        pred_px += np.bincount(p.ravel(), minlength=len(labels))[: len(labels)]
        per_image.append(float(np.mean(i[u > 0] / u[u > 0])) if (u > 0).any() else float("nan"))
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return {"iou": {n: float(v) for n, v in zip(labels, iou)}, "miou": float(np.nanmean(iou)),
            "per_image_miou": float(np.nanmean(per_image)) if per_image else float("nan"), "images": len(pred),
            "true_pixels": {n: int(v) for n, v in zip(labels, true_px)},
            "predicted_pixels": {n: int(v) for n, v in zip(labels, pred_px)}}

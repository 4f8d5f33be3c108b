"""Pure functions for the runtime maths: colour, resize, letterbox, softmax. numpy + OpenCV only.
Each task's decode (and NMS for boxes) is in deploy/tasks/."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .spec import TaskSpec

LETTERBOX_FILL = 114


@dataclass(frozen=True)
class Placement:
    """Where a source image landed in the model input: ``input = source * scale + pad``."""

    scale_xy: tuple[float, float]
    pad_xy: tuple[float, float]
    source_hw: tuple[int, int]

    def to_source(self, xy_input: np.ndarray) -> np.ndarray:
        """Map (..., 2) points from model-input pixels to source pixels."""
        xy = (np.asarray(xy_input, dtype=np.float32) - np.float32(self.pad_xy)) / np.float32(self.scale_xy)
        return xy


def to_model_color(frame_bgr: np.ndarray, color: str) -> np.ndarray:
    """The one place where OpenCV's BGR frames become the channel order a model wants."""
    if frame_bgr.ndim == 2:
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"frames must have shape (h, w, 3) or (h, w), got {frame_bgr.shape}")
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB) if color == "RGB" else frame_bgr


def fit_to_input(image: np.ndarray, input_hw: tuple[int, int], mode: str) -> tuple[np.ndarray, Placement]:
    """Resize ``image`` (h, w, c) to ``input_hw`` by stretching or letterboxing."""
    h, w = image.shape[:2]
    ih, iw = input_hw
    interp = cv2.INTER_AREA if (h > ih or w > iw) else cv2.INTER_LINEAR
    if mode == "stretch":
        out = cv2.resize(image, (iw, ih), interpolation=interp) if (h, w) != (ih, iw) else image
        return out, Placement((iw / w, ih / h), (0.0, 0.0), (h, w))
    if mode != "letterbox":
        raise ValueError(f"resize mode must be 'stretch' or 'letterbox', got {mode!r}")
    scale = min(ih / h, iw / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    top, left = (ih - nh) // 2, (iw - nw) // 2
    out = np.full((ih, iw, image.shape[2]), LETTERBOX_FILL, dtype=image.dtype)
    out[top : top + nh, left : left + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
    return out, Placement((nw / w, nh / h), (float(left), float(top)), (h, w))


def preprocess(frames_bgr: list[np.ndarray], spec: TaskSpec) -> tuple[np.ndarray, list[Placement]]:
    """BGR frames of any size -> a float32 NHWC batch for the model, and where each frame went."""
    batch = np.empty((len(frames_bgr), *spec.input_hw, 3), dtype=np.float32)
    placements = []
    for i, frame in enumerate(frames_bgr):
        image, placement = fit_to_input(to_model_color(frame, spec.color), spec.input_hw, spec.resize)
        batch[i] = image
        placements.append(placement)
    if spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0):
        batch -= np.float32(spec.mean)
        batch /= np.float32(spec.std)
    return batch, placements


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def as_probs(x: np.ndarray, spec) -> np.ndarray:
    """Model scores as probabilities: softmax when the spec says the model gives logits."""
    x = np.asarray(x, dtype=np.float32)
    return softmax(x) if spec.output == "logits" else x

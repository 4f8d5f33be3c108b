"""Pure functions for the runtime maths: colour, resize, letterbox, softmax. numpy + OpenCV only.
Each task's decode (and NMS for boxes) is in deploy/tasks/."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .spec import TaskSpec

LETTERBOX_FILL = 114
# Changes whenever the pixels fit_to_input makes change: caches of decoded images or features name it.
RESIZE_VERSION = "reduce-linear-1"


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


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """A (h, w, 3) frame as it is, a grey (h, w) one as three channels; anything else is refused."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must have shape (h, w, 3) or (h, w), got {frame.shape}")
    return frame


def to_model_color(frame_bgr: np.ndarray, color: str) -> np.ndarray:
    """The one place where OpenCV's BGR frames become the channel order a model wants."""
    frame_bgr = as_bgr(frame_bgr)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB) if color == "RGB" else frame_bgr


def shrink(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Down-scale ``image`` to ``size_wh`` (w, h), averaging like INTER_AREA at a third to half its
    cost (640x480 to 224x224: 0.27-0.36 ms against 0.90-0.93 ms). First an exact integer box reduction per axis
    (OpenCV's fast INTER_AREA path: each pixel the mean of a kx-by-ky block), then linear interpolation
    over the factor left, below 2, where linear skips little (0.3 grey levels from INTER_AREA on a
    640x480 clip). Pillow's ``reduce`` + resample (its ``reducing_gap``) works the same way. Where no
    divisor of a side brings the factor left below 2 (a side of prime length), the second step is
    INTER_AREA (exact, slower)."""
    w, h = size_wh
    sh, sw = image.shape[:2]
    kx, ky = max(1, sw // w), max(1, sh // h)
    while kx > 1 and sw % kx:
        kx -= 1
    while ky > 1 and sh % ky:
        ky -= 1
    if kx > 1 or ky > 1:
        image = cv2.resize(image, (sw // kx, sh // ky), interpolation=cv2.INTER_AREA)
        sh, sw = image.shape[:2]
    if (sw, sh) == (w, h):
        return image
    left_over = max(sw / w, sh / h)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR if left_over < 2 else cv2.INTER_AREA)


def _resize(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    h, w = image.shape[:2]
    if (w, h) == size_wh:
        return image
    if w >= size_wh[0] and h >= size_wh[1]:
        return shrink(image, size_wh)
    return cv2.resize(image, size_wh, interpolation=cv2.INTER_AREA if (h > size_wh[1] or w > size_wh[0])
                      else cv2.INTER_LINEAR)


def fit_to_input(image: np.ndarray, input_hw: tuple[int, int], mode: str) -> tuple[np.ndarray, Placement]:
    """Resize ``image`` (h, w, c) to ``input_hw`` by stretching, letterboxing or a centre crop (down-scaling by
    :func:`shrink`, up-scaling linearly)."""
    h, w = image.shape[:2]
    ih, iw = input_hw
    if mode == "stretch":
        return _resize(image, (iw, ih)), Placement((iw / w, ih / h), (0.0, 0.0), (h, w))
    if mode == "crop":  # scale to cover the input, keep the centre (torchvision's Resize + CenterCrop)
        scale = max(ih / h, iw / w)
        nh, nw = max(ih, round(h * scale)), max(iw, round(w * scale))
        top, left = (nh - ih) // 2, (nw - iw) // 2
        out = _resize(image, (nw, nh))[top : top + ih, left : left + iw]
        return out, Placement((nw / w, nh / h), (float(-left), float(-top)), (h, w))
    if mode != "letterbox":
        raise ValueError(f"resize mode must be 'stretch', 'letterbox' or 'crop', got {mode!r}")
    scale = min(ih / h, iw / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    top, left = (ih - nh) // 2, (iw - nw) // 2
    out = np.full((ih, iw, image.shape[2]), LETTERBOX_FILL, dtype=image.dtype)
    out[top : top + nh, left : left + nw] = _resize(image, (nw, nh))
    return out, Placement((nw / w, nh / h), (float(left), float(top)), (h, w))


def preprocess(frames_bgr: list[np.ndarray], spec: TaskSpec) -> tuple[np.ndarray, list[Placement]]:
    """BGR frames of any size -> a float32 batch for the model (NHWC, or NCHW where the spec says), and where
    each frame went."""
    batch = np.empty((len(frames_bgr), *spec.input_hw, 3), dtype=np.float32)
    placements = []
    for i, frame in enumerate(frames_bgr):
        image, placement = fit_to_input(as_bgr(frame), spec.input_hw, spec.resize)
        batch[i] = to_model_color(image, spec.color)  # after the resize: a channel swap of fewer pixels
        placements.append(placement)
    if spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0):
        batch -= np.float32(spec.mean)
        batch /= np.float32(spec.std)
    if getattr(spec, "layout", "NHWC") == "NCHW":  # a BackboneSpec (deploy/embed.py) is always NHWC
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))  # (n, h, w, 3) -> (n, 3, h, w)
    return batch, placements


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def as_probs(x: np.ndarray, spec) -> np.ndarray:
    """Model scores as probabilities: softmax when the spec says the model gives logits."""
    x = np.asarray(x, dtype=np.float32)
    return softmax(x) if spec.output == "logits" else x

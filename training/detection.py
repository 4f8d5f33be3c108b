"""Detection training: the stream's samples, box augmentation and FCOS training targets. No
TensorFlow here; the box readers are in deploy/boxdata.py and the AP metric in
deploy/tasks/detect.py (``eval`` needs both on a Jetson)."""

from __future__ import annotations

import json

import cv2
import numpy as np

from ..deploy.boxdata import BoxSample
from ..deploy.images import read_image
from ..deploy.ops import LETTERBOX_FILL, Placement, fit_to_input, to_model_color
from ..deploy.spec import TaskSpec
from .samples import PLACEMENT, Source, model_input, placement_row

MIN_VISIBLE = 0.4  # a box cut by a crop keeps its clipped part if at least this share of it remains
MIN_SIDE_PX = 2.0  # ... and the clipped box is at least this wide and high (model-input pixels)


# --- augmentation -------------------------------------------------------------------------------


def random_box_matrix(hw: tuple[int, int], size: int, rng: np.random.Generator, zoom: float, translate: float,
                      flip: bool, rotation_deg: float = 0.0, rot90: float = 0.0) -> np.ndarray:
    """Letterbox, then scale by 1 +- zoom (about 10% independently per axis), shift (crop when larger
    than the input, anywhere within ``translate`` otherwise), maybe mirror; then, about the centre,
    a quarter turn with probability ``rot90`` and a small rotation within +-``rotation_deg``."""
    h, w = hw
    base = min(size / h, size / w) * rng.uniform(1 - zoom, 1 + zoom)
    sx, sy = base * rng.uniform(0.9, 1.1), base * rng.uniform(0.9, 1.1)
    tx = (size - w * sx) / 2 + rng.uniform(-1, 1) * max(abs(size - w * sx) / 2, translate * size)
    ty = (size - h * sy) / 2 + rng.uniform(-1, 1) * max(abs(size - h * sy) / 2, translate * size)
    m = np.array([[sx, 0, tx], [0, sy, ty], [0, 0, 1]], np.float64)
    if flip and rng.random() < 0.5:
        m = np.array([[-1, 0, size], [0, 1, 0], [0, 0, 1]], np.float64) @ m
    angle = rng.uniform(-rotation_deg, rotation_deg) if rotation_deg else 0.0
    if rot90 and rng.random() < rot90:
        angle += 90.0 * rng.choice([-1, 1])
    if angle:
        m = np.vstack([cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0), [0, 0, 1]]) @ m
    return m[:2]


def warp_boxes(xyxy: np.ndarray, m: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes under an affine map (the box around the four moved corners: exact for scale, shift,
    mirror and quarter turns, a little loose for other angles), clipped to the input; returns
    (boxes, kept mask): a box stays when at least MIN_VISIBLE of it is inside and the clipped box is
    MIN_SIDE_PX on each side."""
    if len(xyxy) == 0:
        return xyxy.reshape(0, 4), np.zeros(0, bool)
    x0, y0, x1, y1 = (xyxy[:, i] for i in range(4))
    corners = np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x0, y1], 1),
                        np.stack([x1, y1], 1)], axis=1) @ m[:, :2].T + m[:, 2]  # (n, 4 corners, xy)
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    full = np.prod(hi - lo, axis=1)
    clo, chi = np.clip(lo, 0, size), np.clip(hi, 0, size)
    side = chi - clo
    kept = (np.prod(side, axis=1) >= MIN_VISIBLE * np.maximum(full, 1e-9)) & (side >= MIN_SIDE_PX).all(axis=1)
    return np.concatenate([clo, chi], axis=1).astype(np.float32), kept


def augment_boxes(image_rgb: np.ndarray, xyxy: np.ndarray, label: np.ndarray, size: int, rng: np.random.Generator,
                  config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A source image (any size) and its boxes -> one augmented (size, size) input and the boxes
    and labels in it. Colour jitter from the keypoint module (image only)."""
    from .keypoints import color_jitter

    m = random_box_matrix(image_rgb.shape[:2], size, rng, config.zoom, config.translate, config.hflip,
                          getattr(config, "rotation_deg", 0.0), getattr(config, "rot90", 0.0))
    out = cv2.warpAffine(image_rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(LETTERBOX_FILL,) * 3)
    boxes, kept = warp_boxes(xyxy, m, size)
    return color_jitter(out, rng, config.color, config.grayscale,
                        getattr(config, "lowres", 0.0)), boxes[kept], label[kept]


def mosaic(images: list[np.ndarray], boxes: list[np.ndarray], labels: list[np.ndarray], size: int,
           rng: np.random.Generator, config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four sources, each augmented at half size into one quadrant (objects smaller, in new
    company, as in YOLOv4's mosaic); boxes follow their image."""
    half = size // 2
    out = np.empty((size, size, 3), np.uint8)
    all_boxes, all_labels = [], []
    for k, (image, xyxy, label) in enumerate(zip(images, boxes, labels)):
        tile, b, lab = augment_boxes(image, xyxy, label, half, rng, config)
        y, x = (k // 2) * half, (k % 2) * half
        out[y : y + half, x : x + half] = tile
        all_boxes.append(b + np.float32([x, y, x, y]))
        all_labels.append(lab)
    return out, np.concatenate(all_boxes).reshape(-1, 4), np.concatenate(all_labels)


def letterbox_sample(image_rgb: np.ndarray, xyxy: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """No augmentation: the runtime's own letterbox (ops.fit_to_input), boxes moved with it."""
    out, placement = fit_to_input(image_rgb, (size, size), "letterbox")
    return out, placed_boxes(xyxy, placement, size)


def placed_boxes(xyxy: np.ndarray, placement: Placement, size: int) -> np.ndarray:
    """Source-pixel boxes moved to where the source went in the (size, size) input."""
    m = np.array([[placement.scale_xy[0], 0, placement.pad_xy[0]], [0, placement.scale_xy[1], placement.pad_xy[1]]])
    return warp_boxes(xyxy, m, size)[0]


def shrink(image_rgb: np.ndarray, xyxy: np.ndarray, longest: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep training sources at most ``longest`` px on their long side (faster warps, same result)."""
    h, w = image_rgb.shape[:2]
    scale = longest / max(h, w)
    if scale >= 1:
        return image_rgb, xyxy
    small = cv2.resize(image_rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return small, xyxy * np.float32([small.shape[1] / w, small.shape[0] / h] * 2)


# --- the stream's samples -----------------------------------------------------------------------


def _stamp(sample: BoxSample) -> str:
    return json.dumps({"xyxy": sample.xyxy.tolist(), "label": sample.label.tolist()})


def train_source(samples: list[BoxSample], longest: int, name: str) -> Source:
    """Training sources: the RGB photo shrunk to at most ``longest`` px on its long side (any shape)
    with its boxes (n, 4) and labels (n,), before augmentation."""

    def load(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        bgr = read_image(samples[i].path)
        if bgr is None:
            return None
        image, xyxy = shrink(to_model_color(bgr, "RGB"), samples[i].xyxy, longest)
        return image, xyxy, samples[i].label

    return Source(name, tuple(s.path for s in samples), tuple(_stamp(s) for s in samples), longest, load,
                  (("uint8", (None, None, 3)), ("float32", (None, 4)), ("int64", (None,))),
                  variant="RGB, long side at most the size")


def val_source(samples: list[BoxSample], spec: TaskSpec, name: str) -> Source:
    """Validation samples: the input as the runner makes it (``spec``: letterbox), the boxes moved
    with it, their labels, and (info) the placement that maps predictions back to the source."""
    (h, w) = spec.input_hw

    def load(i: int) -> tuple | None:
        found = model_input(samples[i].path, spec)
        if found is None:
            return None
        image, placement = found
        return image, placed_boxes(samples[i].xyxy, placement, w), samples[i].label, placement_row(placement)

    return Source(name, tuple(s.path for s in samples), tuple(_stamp(s) for s in samples), w, load,
                  (("uint8", (h, w, 3)), ("float32", (None, 4)), ("int64", (None,)), PLACEMENT), info=1,
                  variant=f"{spec.color} {spec.resize}")


# --- training targets ---------------------------------------------------------------------------


def grid_centres(size: int, grid: int) -> np.ndarray:
    """(grid*grid, 2) cell centres in input pixels, row-major (the order of the model's anchors)."""
    stride = size / grid
    c = (np.arange(grid, dtype=np.float32) + 0.5) * stride
    xs, ys = np.meshgrid(c, c)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def encode_targets(xyxy: np.ndarray, label: np.ndarray, size: int, grid: int, num_classes: int,
                   radius: float = 1.5) -> np.ndarray:
    """FCOS-style targets per cell, (grid*grid, 6 + classes): l, t, r, b (divided by ``size``),
    centre-ness, positive flag, one-hot class. A cell is positive for a box when its centre lies
    inside the box and within ``radius`` strides of the box centre ("centre sampling"); a cell
    claimed by several boxes takes the smallest. A box narrower than a stride may hold no cell
    centre and then has no positive cell: the grid's limit (16 px of the input at stride 16)."""
    centres = grid_centres(size, grid)
    out = np.zeros((len(centres), 6 + num_classes), np.float32)
    if len(xyxy) == 0:
        return out
    stride = size / grid
    x, y = centres[:, :1], centres[:, 1:]  # (a, 1)
    x0, y0, x1, y1 = (xyxy[:, i][None, :] for i in range(4))  # (1, n)
    ltrb = np.stack([x - x0, y - y0, x1 - x, y1 - y], axis=2)  # (a, n, 4)
    inside = ltrb.min(axis=2) > 0
    near = (np.abs(x - (x0 + x1) / 2) < radius * stride) & (np.abs(y - (y0 + y1) / 2) < radius * stride)
    area = np.where(inside & near, (x1 - x0) * (y1 - y0), np.inf)  # (a, n)
    best = area.argmin(axis=1)
    rows = np.nonzero(np.isfinite(area.min(axis=1)))[0]
    d = ltrb[rows, best[rows]]
    lr, tb = d[:, [0, 2]], d[:, [1, 3]]
    out[rows, :4] = d / size
    out[rows, 4] = np.sqrt(lr.min(1) / lr.max(1) * tb.min(1) / tb.max(1))
    out[rows, 5] = 1.0
    out[rows, 6 + label[best[rows]]] = 1.0
    return out

"""Pure functions for the runtime maths: colour, resize, decode, NMS. numpy + OpenCV only."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .results import Classification, Detections, Keypoints, Result, Segmentation
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


def _probs(x: np.ndarray, spec: TaskSpec) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return softmax(x) if spec.output == "logits" else x


def decode_classify(outputs: list[np.ndarray], spec: TaskSpec) -> list[Classification]:
    probs = _probs(outputs[0], spec)
    if probs.ndim != 2 or probs.shape[1] != len(spec.labels):
        raise ValueError(f"a classifier must output (n, {len(spec.labels)}), got {probs.shape}")
    return [Classification(spec.labels, p) for p in probs]


def decode_keypoints(outputs: list[np.ndarray], spec: TaskSpec, placements: list[Placement]) -> list[Keypoints]:
    k = len(spec.labels)
    raw = np.asarray(outputs[0], dtype=np.float32)
    if raw.ndim == 2 and raw.shape[1] == 2 * k:
        raw = raw.reshape(-1, k, 2)  # (n, 2k) -> (n, k, 2)
    if raw.ndim != 3 or raw.shape[1] != k or raw.shape[2] not in (2, 3):
        raise ValueError(f"a keypoint model must output (n, {k}, 2|3) or (n, {2 * k}), got {raw.shape}")
    ih, iw = spec.input_hw
    results = []
    for points, placement in zip(raw, placements):
        xy_input = points[:, :2] * np.float32((iw, ih))  # normalised -> model-input pixels
        conf = points[:, 2] if points.shape[1] == 3 else None
        results.append(Keypoints(spec.labels, placement.to_source(xy_input), conf))
    return results


def decode_segment(outputs: list[np.ndarray], spec: TaskSpec, placements: list[Placement]) -> list[Segmentation]:
    probs = _probs(outputs[0], spec)
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


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) xyxy box against (n, 4) boxes."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_out: int = 300) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size and len(keep) < max_out:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i], boxes[order[1:]])
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    offset = classes.astype(np.float32)[:, None] * (float(boxes.max()) + 1.0)
    return nms(boxes + offset, scores, iou_threshold)


def decode_detect(
    outputs: list[np.ndarray],
    spec: TaskSpec,
    placements: list[Placement],
    score_threshold: float | None = None,
    iou_threshold: float | None = None,
) -> list[Detections]:
    if len(outputs) != 2:
        raise ValueError(f"a detector must have 2 outputs (boxes, scores), got {len(outputs)}")
    boxes_all, scores_all = (np.asarray(o, dtype=np.float32) for o in outputs)
    c = len(spec.labels)
    if boxes_all.ndim != 3 or boxes_all.shape[2] != 4 or scores_all.shape != (*boxes_all.shape[:2], c):
        raise ValueError(
            f"a detector must output boxes (n, a, 4) and scores (n, a, {c}), got {boxes_all.shape}, {scores_all.shape}"
        )
    score_threshold = spec.score_threshold if score_threshold is None else score_threshold
    iou_threshold = spec.iou_threshold if iou_threshold is None else iou_threshold
    ih, iw = spec.input_hw
    results = []
    for boxes, scores, placement in zip(boxes_all, scores_all, placements):
        label_id = scores.argmax(axis=1)
        score = scores[np.arange(scores.shape[0]), label_id]
        mask = score >= score_threshold
        boxes, score, label_id = boxes[mask], score[mask], label_id[mask]
        keep = batched_nms(boxes, score, label_id, iou_threshold)
        xyxy_input = boxes[keep].reshape(-1, 2, 2) * np.float32((iw, ih))  # (n, 4) -> (n, 2 corners, xy)
        xyxy = placement.to_source(xyxy_input).reshape(-1, 4)
        sh, sw = placement.source_hw
        xyxy = np.clip(xyxy, 0, np.float32((sw, sh, sw, sh)))
        results.append(Detections(spec.labels, xyxy, score[keep], label_id[keep]))
    return results


def decode(
    outputs: list[np.ndarray], spec: TaskSpec, placements: list[Placement], **detect_options: float | None
) -> list[Result]:
    """Model outputs for a batch -> one typed result per frame."""
    if spec.kind == "classify":
        return decode_classify(outputs, spec)
    if spec.kind == "keypoints":
        return decode_keypoints(outputs, spec, placements)
    if spec.kind == "segment":
        return decode_segment(outputs, spec, placements)
    return decode_detect(outputs, spec, placements, **detect_options)

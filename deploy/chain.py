"""Two models in one loop: a detector finds objects, a second model looks at each one.

``edgevision run --model models/hands.onnx --then models/fingers.onnx``: every hand box is widened
by a margin, made square around its centre (the classifier then sees the hand undistorted),
cropped from the full-resolution frame, and the crops go through the second model as one batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .ops import LETTERBOX_FILL
from .results import Classification, Detections
from .runner import Runner

DEFAULT_MARGIN = 0.15  # of the box's longer side, on each side


def square_crop_box(xyxy: np.ndarray, margin: float) -> np.ndarray:
    """(n, 4) boxes -> (n, 4) squares around the same centres, side = longer side * (1 + 2 * margin)."""
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    half = (xyxy[:, 2:] - xyxy[:, :2]).max(axis=1, keepdims=True) * (0.5 + margin)
    return np.concatenate([centre - half, centre + half], axis=1)


def crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The pixels of ``box`` (x0, y0, x1, y1); parts outside the frame are filled with grey."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    inner = frame[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
    if (x0, y0, x1, y1) == (max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)):
        return inner.copy()
    out = np.full((y1 - y0, x1 - x0, *frame.shape[2:]), LETTERBOX_FILL, frame.dtype)
    if inner.size:
        out[max(0, -y0) : max(0, -y0) + inner.shape[0], max(0, -x0) : max(0, -x0) + inner.shape[1]] = inner
    return out


@dataclass(frozen=True)
class Chained:
    """A detector's boxes, and for each the second model's result on its crop."""

    detections: Detections
    then: tuple[Classification, ...]
    crop_xyxy: np.ndarray  # (n, 4) the square regions cropped, source pixels

    def __post_init__(self) -> None:
        if len(self.then) != len(self.detections):
            raise ValueError(f"{len(self.detections)} boxes but {len(self.then)} chained results")

    def top_label(self) -> str | None:
        """The second model's answer on the most confident box; None when nothing was found."""
        return self.then[0].label if self.then else None

    def box_texts(self) -> list[str]:
        """What to write on each box: the second model's answer first, then the detector's label."""
        texts = []
        for result, score, cls in zip(self.then, self.detections.score, self.detections.label_id):
            texts.append(f"{result.label} ({result.score:.0%})  {self.detections.labels[int(cls)]} {score:.2f}")
        return texts

    def to_json(self) -> dict:
        out = self.detections.to_json()
        for item, result, square in zip(out["detections"], self.then, self.crop_xyxy):
            item["crop_xyxy"] = [round(float(v), 2) for v in square]
            item["then"] = result.to_json()
        out["task"] = "chain"
        return out


class ChainRunner:
    """Looks like a Runner to the loop and to predict: ``infer(frames)`` -> Chained results."""

    def __init__(self, first: Runner, then: Runner, margin: float = DEFAULT_MARGIN, max_boxes: int = 16) -> None:
        if first.spec.kind != "detect":
            raise UserError(f"--then needs a detection model first; {first.path.name} is a {first.spec.kind} model")
        if then.spec.kind != "classify":
            raise UserError(f"--then takes a classification model; {then.path.name} is a {then.spec.kind} model")
        if not 0 <= margin <= 1:
            raise UserError(f"--crop-margin must be within 0..1, got {margin}")
        self.first, self.then, self.margin, self.max_boxes = first, then, margin, max_boxes
        self.spec, self.report, self.path = first.spec, first.report, first.path

    @property
    def provider_line(self) -> str:
        return self.first.provider_line

    def infer(self, frames_bgr: list[np.ndarray]) -> tuple[list[Chained], dict[str, float]]:
        detections, timings = self.first.infer(frames_bgr)
        t0 = time.perf_counter()
        squares = [square_crop_box(det.xyxy[: self.max_boxes], self.margin) for det in detections]
        crops = [crop(frame, box) for frame, boxes in zip(frames_bgr, squares) for box in boxes]
        t1 = time.perf_counter()
        then_results, then_timings = self.then.infer(crops) if crops else ([], {})
        out, start = [], 0
        for det, boxes in zip(detections, squares):  # the crops went in frame order
            n = len(boxes)
            det = Detections(det.labels, det.xyxy[:n], det.score[:n], det.label_id[:n])
            out.append(Chained(det, tuple(then_results[start : start + n]), boxes))
            start += n
        for key, value in then_timings.items():
            timings[key] = timings.get(key, 0.0) + value
        timings["preprocess_ms"] = timings.get("preprocess_ms", 0.0) + (t1 - t0) * 1e3
        return out, timings

    def __call__(self, frame_bgr: np.ndarray) -> Chained:
        return self.infer([frame_bgr])[0][0]


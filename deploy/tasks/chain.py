"""The chain's result (a detector's boxes, each with a second model's answer on its crop: a class,
or points in the frame's pixels): crop geometry, result type, draw, summary. The runner that makes
it is deploy/chain.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..ops import LETTERBOX_FILL
from .classify import Classification
from .detect import Detections, track_text
from .keypoints import Keypoints

KIND = "chain"
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
    """A detector's boxes, and for each the second model's result on its crop (keypoints in the
    frame's pixels, not the crop's)."""

    detections: Detections
    then: tuple[Classification | Keypoints, ...]
    crop_xyxy: np.ndarray  # (n, 4) the square regions cropped, source pixels
    kind: ClassVar[str] = KIND

    def __post_init__(self) -> None:
        if len(self.then) != len(self.detections):
            raise ValueError(f"{len(self.detections)} boxes but {len(self.then)} chained results")

    def top_label(self) -> str | None:
        """The second model's class on the most confident box; None when nothing was found or the
        second model gives points."""
        first = self.then[0] if self.then else None
        return first.label if isinstance(first, Classification) else None

    def box_texts(self) -> list[str]:
        """What to write on each box: the second model's class first (points are drawn, not written),
        then the detector's label."""
        texts = []
        for result, score, cls in zip(self.then, self.detections.score, self.detections.label_id):
            found = f"{self.detections.labels[int(cls)]} {score:.2f}"
            texts.append(f"{result.label} ({result.score:.0%})  {found}" if isinstance(result, Classification)
                         else found)
        return texts

    def to_dict(self) -> dict:
        out = self.detections.to_dict()
        for item, result, square in zip(out["detections"], self.then, self.crop_xyxy):
            item["crop_xyxy"] = [round(float(v), 2) for v in square]
            item["then"] = result.to_dict()
        out["task"] = KIND
        return out

    def draw(self, frame: np.ndarray) -> None:
        self.detections.draw(frame, self.box_texts(), text_scale=0.8)  # the answer is the point: larger
        for result in self.then:
            if isinstance(result, Keypoints):
                result.draw(frame)


def _then_text(then: dict) -> str:
    if "points" in then:
        return " ".join(f"{n}=({x:.0f},{y:.0f})" for n, (x, y) in then["points"].items())
    return then["label"]


def summary(result: dict) -> str:
    return f"{len(result['detections'])} found: " + ", ".join(
        f"{track_text(d)}{d['label']} {d['score']:.2f} -> {_then_text(d['then'])}" for d in result["detections"][:5]
    )

"""Result kind ``poses``: boxes, each with its own named points (what an Ultralytics YOLO pose model finds;
edgevision's own ``keypoints`` kind is one set of points per image). Result type, draw, summary. The decode
from YOLO outputs is in deploy/tasks/yolo.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from ..draw import WHITE, color_for, frame_scale
from .detect import Detections

KIND = "poses"
COCO_POINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
               "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
               "right_knee", "left_ankle", "right_ankle")  # Ultralytics' 17-point pose models (COCO order)
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
                 (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
MIN_DRAWN_CONF = 0.5  # a point the model is less sure of is not drawn (Ultralytics' default too)


@dataclass(frozen=True)
class Poses:
    detections: Detections
    names: tuple[str, ...]  # the points of each box
    xy: np.ndarray  # (n, k, 2) float32, source pixels
    conf: np.ndarray | None = None  # (n, k) float32 in 0..1, where the model has one
    kind: ClassVar[str] = KIND

    def __post_init__(self) -> None:
        n, k = len(self.detections), len(self.names)
        xy = np.asarray(self.xy, dtype=np.float32)
        if xy.shape != (n, k, 2):
            raise ValueError(f"xy must have shape ({n}, {k}, 2), got {xy.shape}")
        object.__setattr__(self, "xy", xy)
        if self.conf is not None:
            conf = np.asarray(self.conf, dtype=np.float32)
            if conf.shape != (n, k):
                raise ValueError(f"conf must have shape ({n}, {k}), got {conf.shape}")
            object.__setattr__(self, "conf", conf)

    def __len__(self) -> int:
        return len(self.detections)

    def to_dict(self) -> dict:
        out = self.detections.to_dict()
        for i, item in enumerate(out["detections"]):
            item["points"] = {name: [round(float(x), 2), round(float(y), 2)]
                              for name, (x, y) in zip(self.names, self.xy[i])}
            if self.conf is not None:
                item["confidence"] = {name: round(float(c), 4) for name, c in zip(self.names, self.conf[i])}
        out["task"] = KIND
        return out

    def draw(self, frame: np.ndarray) -> None:
        """Boxes, then each box's points (and the COCO skeleton for 17-point models)."""
        self.detections.draw(frame)
        s = frame_scale(frame)
        skeleton = COCO_SKELETON if self.names == COCO_POINTS else ()
        for i in range(len(self)):
            seen = np.ones(len(self.names), bool) if self.conf is None else self.conf[i] >= MIN_DRAWN_CONF
            points = [tuple(int(round(v)) for v in p) for p in self.xy[i]]
            for a, b in skeleton:
                if seen[a] and seen[b]:
                    cv2.line(frame, points[a], points[b], WHITE, max(1, int(2 * s)), cv2.LINE_AA)
            for j, point in enumerate(points):
                if seen[j]:
                    cv2.circle(frame, point, max(2, int(4 * s)), color_for(j), -1, cv2.LINE_AA)


def summary(result: dict) -> str:
    return f"{len(result['detections'])} found: " + ", ".join(
        f"{d['label']} {d['score']:.2f} ({len(d['points'])} points)" for d in result["detections"][:5]
    )

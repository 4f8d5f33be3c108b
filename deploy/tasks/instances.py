"""Result kind ``instances``: boxes, each with its own mask (what an Ultralytics YOLO segment model finds;
edgevision's own ``segment`` kind is a class per pixel instead). Result type, draw, summary. The decode
from YOLO outputs is in deploy/tasks/yolo.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from ..draw import color_for
from .detect import Detections

KIND = "instances"
MAX_POLYGON_POINTS = 200  # per instance in the JSON: an outline, not a mask


def outline(mask: np.ndarray) -> list[list[int]]:
    """The outer edge of a mask's largest region as [[x, y], ...] source pixels (simplified to about a pixel,
    at most MAX_POLYGON_POINTS points); [] for an empty mask."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    largest = max(contours, key=cv2.contourArea)
    epsilon = 1.0
    poly = cv2.approxPolyDP(largest, epsilon, True)
    while len(poly) > MAX_POLYGON_POINTS:
        epsilon *= 2
        poly = cv2.approxPolyDP(largest, epsilon, True)
    return poly.reshape(-1, 2).astype(int).tolist()


@dataclass(frozen=True)
class Instances:
    detections: Detections
    masks: np.ndarray  # (n, h, w) bool, source pixels
    kind: ClassVar[str] = KIND

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        if masks.ndim != 3 or masks.shape[0] != len(self.detections):
            raise ValueError(f"masks must have shape ({len(self.detections)}, h, w), got {masks.shape}")
        if masks.dtype != np.bool_:
            raise ValueError(f"masks must be bool, got {masks.dtype}")
        object.__setattr__(self, "masks", masks)

    def __len__(self) -> int:
        return len(self.detections)

    def to_dict(self) -> dict:
        out = self.detections.to_dict()
        for item, mask in zip(out["detections"], self.masks):
            item["area"] = int(mask.sum())
            item["polygon"] = outline(mask)
        out["task"] = KIND
        return out

    def draw(self, frame: np.ndarray, alpha: float = 0.45) -> None:
        """Each mask tinted in its class colour, then the boxes."""
        if len(self) and self.masks.shape[1:] != frame.shape[:2]:
            raise ValueError(f"masks {self.masks.shape[1:]} do not match the frame {frame.shape[:2]}")
        for mask, cls in zip(self.masks, self.detections.label_id):
            if mask.any():
                frame[mask] = (frame[mask] * (1 - alpha) + np.float32(color_for(int(cls))) * alpha).astype(np.uint8)
        self.detections.draw(frame)


def summary(result: dict) -> str:
    return f"{len(result['detections'])} found: " + ", ".join(
        f"{d['label']} {d['score']:.2f} ({d['area']} px)" for d in result["detections"][:5]
    )

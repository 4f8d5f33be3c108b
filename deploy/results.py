"""Typed, validated results: one frozen type per task kind, in source-image pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Classification:
    labels: tuple[str, ...]
    probs: np.ndarray  # (classes,) float32, sums to 1

    def __post_init__(self) -> None:
        probs = np.asarray(self.probs, dtype=np.float32)
        if probs.shape != (len(self.labels),):
            raise ValueError(f"probs must have shape ({len(self.labels)},), got {probs.shape}")
        object.__setattr__(self, "probs", probs)

    @property
    def label_id(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def label(self) -> str:
        return self.labels[self.label_id]

    @property
    def score(self) -> float:
        return float(self.probs[self.label_id])

    def to_json(self) -> dict:
        return {
            "task": "classify",
            "label": self.label,
            "score": round(self.score, 6),
            "scores": {name: round(float(p), 6) for name, p in zip(self.labels, self.probs)},
        }


@dataclass(frozen=True)
class Keypoints:
    names: tuple[str, ...]
    xy: np.ndarray  # (k, 2) float32, source-image pixels
    conf: np.ndarray | None = None  # (k,) float32 in 0..1, where the model has one

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy, dtype=np.float32)
        if xy.shape != (len(self.names), 2):
            raise ValueError(f"xy must have shape ({len(self.names)}, 2), got {xy.shape}")
        object.__setattr__(self, "xy", xy)
        if self.conf is not None:
            conf = np.asarray(self.conf, dtype=np.float32)
            if conf.shape != (len(self.names),):
                raise ValueError(f"conf must have shape ({len(self.names)},), got {conf.shape}")
            object.__setattr__(self, "conf", conf)

    def to_json(self) -> dict:
        out: dict = {
            "task": "keypoints",
            "points": {n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in zip(self.names, self.xy)},
        }
        if self.conf is not None:
            out["confidence"] = {n: round(float(c), 4) for n, c in zip(self.names, self.conf)}
        return out


@dataclass(frozen=True)
class Segmentation:
    labels: tuple[str, ...]
    class_map: np.ndarray  # (h, w) uint8 class ids at source resolution

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

    def to_json(self) -> dict:
        return {"task": "segment", "size_hw": list(self.class_map.shape), "fractions": self.fractions()}


@dataclass(frozen=True)
class Detections:
    labels: tuple[str, ...]
    xyxy: np.ndarray  # (n, 4) float32, source-image pixels
    score: np.ndarray  # (n,) float32
    label_id: np.ndarray  # (n,) int64

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (n, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        label_id = np.asarray(self.label_id, dtype=np.int64).reshape(-1)
        if score.shape != (n,) or label_id.shape != (n,):
            raise ValueError(f"score and label_id must have shape ({n},), got {score.shape} and {label_id.shape}")
        if n and (label_id.min() < 0 or label_id.max() >= len(self.labels)):
            raise ValueError(f"label_id must lie in 0..{len(self.labels) - 1}, got {label_id.tolist()}")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "label_id", label_id)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def to_json(self) -> dict:
        return {
            "task": "detect",
            "detections": [
                {
                    "label": self.labels[int(c)],
                    "score": round(float(s), 6),
                    "xyxy": [round(float(v), 2) for v in box],
                }
                for box, s, c in zip(self.xyxy, self.score, self.label_id)
            ],
        }


Result = Classification | Keypoints | Segmentation | Detections

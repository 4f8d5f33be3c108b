"""Task ``classify``: one label per image. Result type, decode, draw, summary, headline metric."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from ..draw import BLACK, GREEN, WHITE, color_for, frame_scale, put_label
from ..ops import Placement, as_probs
from ..spec import Headline

KIND = "classify"
HEADLINE = Headline("accuracy", "accuracy", higher_is_better=True)


@dataclass(frozen=True)
class Classification:
    labels: tuple[str, ...]
    probs: np.ndarray  # (classes,) float32, sums to 1
    kind: ClassVar[str] = KIND

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

    def to_dict(self) -> dict:
        return {
            "task": KIND,
            "label": self.label,
            "score": round(self.score, 6),
            "scores": {name: round(float(p), 6) for name, p in zip(self.labels, self.probs)},
        }

    def draw(self, frame: np.ndarray, max_bars: int = 10) -> None:
        s = frame_scale(frame)
        put_label(frame, f"{self.label} {self.score:.0%}", (int(10 * s), int(34 * s)), GREEN, 0.9 * s)
        order = np.argsort(-self.probs)[:max_bars]
        bar_w, bar_h, x0 = int(160 * s), int(14 * s), int(10 * s)
        for row, i in enumerate(order):
            y = int((52 + row * 22) * s)
            cv2.rectangle(frame, (x0, y), (x0 + bar_w, y + bar_h), BLACK, -1)
            cv2.rectangle(frame, (x0, y), (x0 + int(bar_w * float(self.probs[i])), y + bar_h), color_for(int(i)), -1)
            put_label(frame, f"{self.labels[i]} {self.probs[i]:.2f}", (x0 + bar_w + 6, y + bar_h - 2), WHITE, 0.45 * s)


def decode(outputs: list[np.ndarray], spec, placements: list[Placement], **options: float | None
           ) -> list[Classification]:
    probs = as_probs(outputs[0], spec)
    if probs.ndim != 2 or probs.shape[1] != len(spec.labels):
        raise ValueError(f"a classifier must output (n, {len(spec.labels)}), got {probs.shape}")
    return [Classification(spec.labels, p) for p in probs]


def summary(result: dict) -> str:
    """The terminal's short line for a result's JSON."""
    return f"{result['label']} {result['score']:.2f}"

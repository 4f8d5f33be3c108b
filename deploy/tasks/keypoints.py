"""Task ``keypoints``: named (x, y) points. Result type, decode, draw, summary, the NME metric."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from ..draw import WHITE, color_for, frame_scale, put_label
from ..ops import Placement
from ..spec import Headline

KIND = "keypoints"
HEADLINE = Headline("nme_mean", "NME (mean)", higher_is_better=False)


@dataclass(frozen=True)
class Keypoints:
    names: tuple[str, ...]
    xy: np.ndarray  # (k, 2) float32, source-image pixels
    conf: np.ndarray | None = None  # (k,) float32 in 0..1, where the model has one
    kind: ClassVar[str] = KIND

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

    def to_dict(self) -> dict:
        out: dict = {
            "task": KIND,
            "points": {n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in zip(self.names, self.xy)},
        }
        if self.conf is not None:
            out["confidence"] = {n: round(float(c), 4) for n, c in zip(self.names, self.conf)}
        return out

    def draw(self, frame: np.ndarray) -> None:
        s = frame_scale(frame)
        for i, (name, (x, y)) in enumerate(zip(self.names, self.xy)):
            center = (int(round(x)), int(round(y)))
            cv2.circle(frame, center, max(3, int(6 * s)), color_for(i), -1, cv2.LINE_AA)
            cv2.circle(frame, center, max(3, int(6 * s)), WHITE, 1, cv2.LINE_AA)
            text = name if self.conf is None else f"{name} {self.conf[i]:.2f}"
            put_label(frame, text, (center[0] + int(8 * s), center[1] - int(8 * s)), WHITE, 0.5 * s)


def decode(outputs: list[np.ndarray], spec, placements: list[Placement], **options: float | None) -> list[Keypoints]:
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


def summary(result: dict) -> str:
    return " ".join(f"{n}=({x:.0f},{y:.0f})" for n, (x, y) in result["points"].items())


def keypoint_metrics(pred: np.ndarray, true: np.ndarray, norm: np.ndarray, names: tuple[str, ...],
                     norm_kind: str) -> dict:
    """pred, true (n, k, 2) in source pixels; norm (n,). NME per image is the mean over its points."""
    dist = np.linalg.norm(pred - true, axis=2)  # (n, k) pixels
    nme = dist / norm[:, None]
    per_image = nme.mean(axis=1)
    return {
        "nme_mean": float(per_image.mean()),
        "nme_median": float(np.median(per_image)),
        "nme_share_below_0.1": float((per_image < 0.1).mean()),
        "pixel_error_mean": float(dist.mean()),
        "pixel_error_median": float(np.median(dist)),
        "per_point_nme_mean": {n: float(nme[:, i].mean()) for i, n in enumerate(names)},
        "normalised_by": norm_kind,
        "images": int(len(pred)),
    }

"""Two models in one loop: a detector finds objects, a second model looks at each one.
(The chain's result type and crop geometry are in deploy/tasks/chain.py.)

``edgevision run --model models/hands.onnx --then models/fingers.onnx``: every hand box is widened
by a margin, made square around its centre (the second model then sees the hand undistorted),
cropped from the full-resolution frame, and the crops go through the second model as one batch.
The second model classifies each crop (fingers, emotions) or finds points on it (a nose); points
come back in the frame's pixels.
"""

from __future__ import annotations

import time

import numpy as np

from .errors import UserError
from .providers import DEFAULT_MAX_BATCH
from .runner import Prepared, Runner
from .tasks.chain import DEFAULT_MARGIN, Chained, crop, square_crop_box
from .tasks.detect import Detections
from .tasks.keypoints import Keypoints

THEN_KINDS = ("classify", "keypoints")  # what a second stage may be: one answer, or points, per crop


class ChainRunner:
    """Looks like a Runner to the loop and to predict: ``infer(frames)`` -> Chained results."""

    def __init__(self, first: Runner, then: Runner, margin: float = DEFAULT_MARGIN,
                 max_boxes: int = DEFAULT_MAX_BATCH) -> None:
        if first.spec.kind != "detect":
            raise UserError(f"--then needs a detection model first; {first.path.name} is a {first.spec.kind} model")
        if then.spec.kind not in THEN_KINDS:
            raise UserError(f"--then takes a classification or keypoint model; {then.path.name} is a "
                            f"{then.spec.kind} model")
        if not 0 <= margin <= 1:
            raise UserError(f"--crop-margin must be within 0..1, got {margin}")
        self.first, self.then, self.margin, self.max_boxes = first, then, margin, max_boxes
        self.spec, self.path = first.spec, first.path

    @property
    def report(self):
        """The detector's report (it decides how the loop is fed); ``provider_name`` names both."""
        return self.first.report

    @property
    def provider_line(self) -> str:
        first, then = self.first.provider_line, self.then.provider_line
        return first if first == then else f"{first}; then {self.then.path.name} {then}"

    @property
    def provider_name(self) -> str:
        """'TensorRT', or 'TensorRT+CUDA' when the classifier runs elsewhere than the detector."""
        first, then = self.first.provider_name, self.then.provider_name
        return first if first == then else f"{first}+{then}"

    def prepare(self, frames_bgr: list[np.ndarray]) -> Prepared:
        return self.first.prepare(frames_bgr)

    def infer(self, frames_bgr: list[np.ndarray]) -> tuple[list[Chained], dict[str, float]]:
        return self.run(self.prepare(frames_bgr))

    def run(self, prepared: Prepared) -> tuple[list[Chained], dict[str, float]]:
        frames_bgr = prepared.frames
        detections, timings = self.first.run(prepared)
        t0 = time.perf_counter()
        squares = [square_crop_box(det.xyxy[: self.max_boxes], self.margin) for det in detections]
        crops = [crop(frame, box) for frame, boxes in zip(frames_bgr, squares) for box in boxes]
        t1 = time.perf_counter()
        then_results, then_timings = self.then.infer(crops) if crops else ([], {})
        if self.then.spec.kind == "keypoints":  # crop pixels -> frame pixels: a crop starts at its rounded corner
            corners = [np.round(box[:2]) for boxes in squares for box in boxes]
            then_results = [Keypoints(r.names, r.xy + corner, r.conf) for r, corner in zip(then_results, corners)]
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


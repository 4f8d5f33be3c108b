"""The typed results, one frozen type per task kind, in source-image pixels. Each is defined in
its task's module (deploy/tasks/); this module names them together for callers and type hints."""

from __future__ import annotations

from .tasks.chain import Chained
from .tasks.classify import Classification
from .tasks.detect import Detections
from .tasks.keypoints import Keypoints
from .tasks.segment import Segmentation

Result = Classification | Keypoints | Segmentation | Detections
AnyResult = Result | Chained

__all__ = ["AnyResult", "Chained", "Classification", "Detections", "Keypoints", "Result", "Segmentation"]

"""The typed results, one frozen type per task kind, in source-image pixels. Each is defined in
its task's module (deploy/tasks/); this module names them together for callers and type hints."""

from __future__ import annotations

import json

from .errors import UserError
from .tasks.chain import Chained
from .tasks.classify import Classification
from .tasks.detect import Detections
from .tasks.keypoints import Keypoints
from .tasks.segment import Segmentation

Result = Classification | Keypoints | Segmentation | Detections
AnyResult = Result | Chained

__all__ = ["AnyResult", "Chained", "Classification", "Detections", "Keypoints", "Result", "Segmentation", "json_line"]


def json_line(record: dict, compact: bool = False) -> str:
    """``record`` as one line of strict JSON: a NaN or infinity in it (a damaged model's output) is a
    UserError, never a line that JSON readers refuse (Python writes NaN, which is not JSON)."""
    try:
        return json.dumps(record, allow_nan=False, separators=(",", ":") if compact else None) + "\n"
    except ValueError as exc:
        where = f" for {record['file']}" if "file" in record else f" at frame {record.get('frame', '?')}"
        raise UserError(f"the model's result{where} is not a finite number (NaN or infinity): the model is "
                        "damaged or its spec wrong; nothing more was written") from exc

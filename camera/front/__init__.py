"""edgevision: collect, train, export and run small vision models on Jetson-class devices.

The Python API (the CLI is a thin layer over it)::

    import edgevision
    model = edgevision.load("models/thumbs.onnx")     # or a pipeline file, or then="models/x.onnx"
    result = model(frame)                             # BGR numpy frame -> typed result
    result.to_dict()                                  # the JSON 'edgevision predict' prints

This package is the repository's camera/front/ folder (pyproject.toml maps it); its floors are
edgevision.deploy (the model on the device), edgevision.camera (frames in and out) and
edgevision.training (TensorFlow). Names are imported on first use, so that ``edgevision doctor``
still starts when numpy, OpenCV or onnxruntime is broken.
"""

from __future__ import annotations

import importlib
import os

# OpenCV reads its pixel limit once, as it loads: set it to edgevision's (EDGEVISION_MAX_IMAGE_PIXELS,
# default 100 megapixels) before anything imports cv2, for the formats whose header deploy/images.py
# does not read itself. A user's own OPENCV_IO_MAX_IMAGE_PIXELS is kept; 0 leaves OpenCV's (1 gigapixel).
_limit = os.environ.get("EDGEVISION_MAX_IMAGE_PIXELS", "").strip() or "100000000"
if _limit.isdigit() and int(_limit) > 0:
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", _limit)
del _limit

_NAMES = {
    "load": "edgevision.camera.api", "Model": "edgevision.camera.api", "Pipeline": "edgevision.camera.api",
    "read_pipeline": "edgevision.camera.api", "UserError": "edgevision.deploy.errors",
    "TaskSpec": "edgevision.deploy.spec", "Chained": "edgevision.deploy.results",
    "Classification": "edgevision.deploy.results", "Detections": "edgevision.deploy.results",
    "Keypoints": "edgevision.deploy.results", "Segmentation": "edgevision.deploy.results",
    "Tracker": "edgevision.deploy.track", "Analytics": "edgevision.deploy.counting",
    "Line": "edgevision.deploy.counting", "Zone": "edgevision.deploy.counting",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'edgevision' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__

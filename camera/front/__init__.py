"""edgevision: collect, train, export and run small vision models on Jetson-class devices.

The Python API (the CLI is a thin layer over it)::

    import edgevision
    model = edgevision.load("models/thumbs.onnx")     # or a pipeline file, or then="models/x.onnx"
    result = model(frame)                             # BGR numpy frame -> typed result
    result.to_dict()                                  # the JSON 'edgevision predict' prints

This package is the repository's camera/front/ folder (pyproject.toml maps it); its floors are
edgevision.deploy (the model on the device), edgevision.camera (frames in and out) and
edgevision.training (TensorFlow).
"""

from edgevision.camera.api import Model, Pipeline, load, read_pipeline
from edgevision.deploy.errors import UserError
from edgevision.deploy.results import Chained, Classification, Detections, Keypoints, Segmentation
from edgevision.deploy.spec import TaskSpec

__all__ = ["Chained", "Classification", "Detections", "Keypoints", "Model", "Pipeline", "Segmentation", "TaskSpec",
           "UserError", "load", "read_pipeline"]

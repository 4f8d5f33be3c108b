"""Whether the training extra (TensorFlow, tf2onnx) is installed: asked by the CLI before train and export,
without importing anything heavy when it is not needed."""

from __future__ import annotations

from ..deploy.errors import UserError


def needs_training_extra(instead: str = "") -> None:
    """Import TensorFlow quietly: its start-up lines (oneDNN, CUDA probing) are written before its
    logger reads TF_CPP_MIN_LOG_LEVEL, so they are captured like onnxruntime's."""
    import importlib
    import os

    from ..deploy.providers import captured_fds

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with captured_fds():
        try:
            importlib.import_module("tensorflow")  # only here, for train and export: never for run
        except ImportError as exc:
            error = exc
        else:
            error = None
    if error is not None:
        raise UserError(f"this command needs the training extra (pip install -e '.[train]'){instead}: "
                        f"{error}") from error

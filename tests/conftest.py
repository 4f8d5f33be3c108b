from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/tinymodels.py

# A shell starts a background job (`pytest &`) with Ctrl-C ignored, and the processes the tests start
# inherit that: Ctrl-C would then do nothing in them. A user's terminal never ignores it, so neither do the tests.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import tinymodels

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"
SHARED_WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_notop.weights.h5"
TASK_KINDS = ("classify", "keypoints", "segment", "detect")


@dataclass
class AugConfig:
    """The augmentation fields of TrainConfig, for tests of the augmenters (no colour by default)."""

    rotation_deg: float = 20.0
    zoom: float = 0.2
    translate: float = 0.1
    hflip: bool = True
    color: float = 0.0
    grayscale: float = 0.0


def needs_shared(path: Path = SHARED_DATA):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent (only the project's own data is here)")


@pytest.fixture
def tiny_model(tmp_path):
    """tiny_model(kind, **kwargs) -> path of a freshly built tiny ONNX model."""

    def make(kind: str, name: str | None = None, **kwargs) -> Path:
        return tinymodels.save(kind, tmp_path / (name or f"{kind}.onnx"), **kwargs)

    return make


def export_in_fresh_process(run_dir: Path, out: Path) -> str:
    """'edgevision export RUN --out OUT' in a new Python process (as a user runs it, with nothing
    registered by the training process); asserts it succeeded, printed no results on stdout (its
    progress goes to stderr), and returns that progress."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "edgevision.cli", "export", str(run_dir), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout == "", proc.stdout
    return proc.stderr


def playable_frames(path) -> int:
    """How many frames OpenCV decodes from a video file (0 when it does not open: an MP4 without its index)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def solid_frame(h: int, w: int, bgr=(0, 0, 255)) -> np.ndarray:
    frame = np.zeros((h, w, 3), dtype=np.uint8)
    frame[:] = bgr
    return frame


@pytest.fixture
def synthetic_video(tmp_path):
    """video(n, size) -> path to an mp4 of n frames whose colour cycles red, green, blue."""

    def make(n: int = 60, size=(96, 128), name: str = "clip.mp4") -> Path:
        path = tmp_path / name
        h, w = size
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
        assert writer.isOpened()
        colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]
        for i in range(n):
            frame = solid_frame(h, w, colours[(i // 10) % 3])
            cv2.putText(frame, str(i), (5, h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
            writer.write(frame)
        writer.release()
        return path

    return make

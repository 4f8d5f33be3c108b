"""Where frames and results go: a window, a JSON-lines file, the terminal (a video: record.py; a web page:
serve.py)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Protocol, TextIO

import cv2
import numpy as np

from ..deploy.errors import UserError, printable
from ..deploy.images import check_new_output
from ..deploy.results import json_line
from ..deploy.tasks import summary_text

QUIT_KEYS = frozenset({ord("q"), ord("Q"), 27})  # q, Esc
WINDOW_MAX_WH = (1280, 720)


class Sink(Protocol):
    """Where the live loop sends each frame and its record. ``write`` returns False to stop the loop
    (the user pressed q); ``close`` finishes the output. Sinks with a file name it in ``path``."""

    def write(self, image: np.ndarray, record: dict) -> bool: ...

    def close(self) -> None: ...


def opencv_gui() -> str:
    """The GUI backend OpenCV was built with ('NONE' for opencv-python-headless)."""
    m = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    return m.group(1).upper() if m else "NONE"


def display_available() -> bool:
    """True when a window can be shown: a display server is set and OpenCV has a GUI."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return opencv_gui() != "NONE"


class WindowSink:
    """An OpenCV window. ``write`` returns False when the user pressed q or Esc or closed it."""

    def __init__(self, title: str = "edgevision") -> None:
        if not display_available():
            raise UserError(
                "no display for a window (DISPLAY is unset or OpenCV has no GUI): use --no-display, "
                "--record or --jsonl"
            )
        self.title = title
        # opencv-python's bundled Qt warns about its missing font folder on every paint; the
        # overlay draws with OpenCV's own fonts, so those warnings say nothing useful.
        os.environ.setdefault("QT_LOGGING_RULES", "default.warning=false")
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        self._sized = False

    def write(self, image: np.ndarray, record: dict) -> bool:
        if not self._sized:
            h, w = image.shape[:2]
            scale = min(1.0, WINDOW_MAX_WH[0] / w, WINDOW_MAX_WH[1] / h)
            cv2.resizeWindow(self.title, int(w * scale), int(h * scale))
            self._sized = True
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in QUIT_KEYS:
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


class JsonlSink:
    """One JSON object per frame: index, timestamp, result, per-stage timings."""

    def __init__(self, path: Path | None = None, overwrite: bool = False, stream: TextIO | None = None) -> None:
        if (path is None) == (stream is None):
            raise ValueError("JsonlSink needs exactly one of path and stream")
        self.path = check_new_output(path, overwrite) if path is not None else None
        try:
            self._file = open(self.path, "w", encoding="utf-8") if self.path else stream
        except OSError as exc:
            raise UserError(f"cannot write {self.path}: {exc.strerror}") from exc
        self.lines = 0

    def write(self, image: np.ndarray, record: dict) -> bool:
        try:
            self._file.write(json_line(record, compact=True))
            self._file.flush()  # a full disk shows at this frame, not at the end
        except OSError as exc:
            raise UserError(f"writing {self.path or 'JSON lines'} failed ({exc.strerror}) after {self.lines} "
                            "complete lines, which are kept") from exc
        self.lines += 1
        return True

    def close(self) -> None:
        try:
            if self.path is not None:
                self._file.close()
            else:
                self._file.flush()
        except OSError:
            pass  # the write that failed has already said so


class ConsoleSink:
    """Headless feedback on stderr: a short line when the label changes, else every ``every_s`` seconds."""

    def __init__(self, every_s: float = 1.0, stream: TextIO | None = None) -> None:
        self.every_s = every_s
        self.stream = stream or sys.stderr
        self._last = -1e9
        self._last_label: str | None = None

    def write(self, image: np.ndarray, record: dict) -> bool:
        label = record["result"].get("label")
        if record["timestamp"] - self._last >= self.every_s or label != self._last_label:
            self._last = record["timestamp"]
            self._last_label = label
            stats = record["stats"]
            self.stream.write(
                f"frame {record['frame']:>5}  {printable(summary_text(record['result']))}  "
                f"{stats['fps']:.1f} FPS  {stats['latency_ms']:.1f} ms\n"
            )
            self.stream.flush()
        return True

    def close(self) -> None:
        pass

"""Frame sources from one string: ``0``, ``/dev/video1``, ``csi://0``, a GStreamer pipeline,
``video.mp4``, ``images/``, ``photo.jpg``, ``rtsp://...`` or ``http://...``.

Sources are iterators of :class:`Frame` and context managers. Live sources run a reader
thread that keeps only the newest frame, so a slow model never sees stale buffered frames;
files hand over every frame, in order.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from ..deploy.errors import UserError, mask_credentials
from ..deploy.images import IMAGE_SUFFIXES, UnreadableImage, list_images, load_image
from ..deploy.providers import captured_fds, jetson_model
from .capture import CaptureOptions, FlippedSource, csi_pipeline, rtsp_hw_pipeline, set_v4l2_controls

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
SourceKind = Literal["webcam", "device", "csi", "gstreamer", "url", "video", "images", "image"]


class SourceError(UserError):
    """A source that cannot be opened or read."""


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based, in delivery order
    timestamp: float  # seconds (time.time()) when the frame was captured
    image: np.ndarray  # (h, w, 3) uint8, BGR as OpenCV gives it
    name: str = ""  # file name for image sources


class Source(Protocol):
    """What the loop reads frames from: an iterator of :class:`Frame` and a context manager. Files
    hand over every frame; live sources the newest one. ``skipped`` lists unreadable images."""

    description: str
    skipped: list[Path]

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    target: str | int  # camera index, path, URL or pipeline

    @property
    def live(self) -> bool:
        return self.kind in ("webcam", "device", "csi", "gstreamer", "url")


def parse_source(text: str) -> SourceSpec:
    """Classify a ``--source`` string. Pure: touches the file system only to tell files apart."""
    text = text.strip()
    if not text:
        raise SourceError("--source is empty: give a camera index (0), a file, a folder or a URL")
    if text.isdigit():
        if int(text) > 255:
            raise SourceError(f"camera index {text[:20]} is out of range: cameras are 0, 1, 2... (ls /dev/video*)")
        return SourceSpec("webcam", int(text))
    if m := re.fullmatch(r"v4l2://(/dev/video\d+)", text):  # jetson-inference's URI forms
        return SourceSpec("device", m.group(1))
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    if m := re.fullmatch(r"csi://(\d+)", text):
        return SourceSpec("csi", int(m.group(1)))
    if re.match(r"(rtsp|rtsps|http|https|rtmp)://", text, re.IGNORECASE):
        return SourceSpec("url", text)
    if "!" in text:
        return SourceSpec("gstreamer", text)
    if re.fullmatch(r"/dev/video\d+", text):
        return SourceSpec("device", text)
    path = Path(text).expanduser()
    if path.is_dir():
        return SourceSpec("images", str(path))
    if not path.exists():
        raise SourceError(f"source not found: {text} (a camera index, file, folder, csi://N or URL)")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return SourceSpec("image", str(path))
    if suffix in VIDEO_SUFFIXES or path.is_char_device():
        return SourceSpec("video" if suffix in VIDEO_SUFFIXES else "device", str(path))
    raise SourceError(
        f"cannot tell what {text} is: use an image ({', '.join(sorted(IMAGE_SUFFIXES))}) "
        f"or video ({', '.join(sorted(VIDEO_SUFFIXES))}) file"
    )


def opencv_has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    m = re.search(r"GStreamer:\s*(\w+)", info)
    return bool(m and m.group(1).upper() == "YES")


GSTREAMER_FIX = (
    "this OpenCV was built without GStreamer (PyPI's opencv-python never has it): on a Jetson use "
    "JetPack's OpenCV (python3 -m venv --system-site-packages, then pip uninstall opencv-python), "
    "or build OpenCV with -DWITH_GSTREAMER=ON"
)


class ImageSource:
    """Image files, one frame each, in name order. Unreadable files are counted and skipped."""

    def __init__(self, paths: list[Path], description: str, notice: Callable[[str], None] | None = None) -> None:
        if not paths:
            raise SourceError(f"no images in {description} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        self.paths = paths
        self.description = description
        self.skipped: list[Path] = []
        self.live = False
        self.notice = notice  # told why each skipped file was skipped, one line each

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for path in self.paths:
            try:
                image = load_image(path)  # never opens a pipe or device; refuses image bombs by their header
            except UnreadableImage as exc:
                self.skipped.append(path)
                if self.notice:
                    self.notice(f"skipped: {exc}")
                continue
            yield Frame(index, time.time(), image, str(path))
            index += 1

    def close(self) -> None:
        pass

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoFileSource:
    """Every frame of a video file, in order; ``realtime`` paces them at the file's frame rate
    (for watching), ``loop`` starts again at the end."""

    def __init__(self, path: str, realtime: bool = False, loop: bool = False) -> None:
        self.cap = cv2.VideoCapture(path)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open video {path}: not a video OpenCV can decode")
        self.description = path
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.realtime = realtime and self.fps > 0
        self.loop = loop
        self.skipped: list[Path] = []
        self.live = False

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        start = time.perf_counter()
        while True:
            ok, image = self.cap.read()
            if not ok:
                if not (self.loop and index and self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)):
                    return
                ok, image = self.cap.read()
                if not ok:
                    return
            if self.realtime:
                time.sleep(max(0.0, start + index / self.fps - time.perf_counter()))
            yield Frame(index, time.time(), image)
            index += 1

    def close(self) -> None:
        self.cap.release()

    def __enter__(self) -> VideoFileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SourceLost(SourceError):
    """A live source stopped sending frames and did not come back: exit code 3 (see the README)."""

    exit_code = 3


class LiveSource:
    """A camera or stream read by a background thread that keeps only the newest frame.

    A source that ends or sends nothing for ``stall_timeout_s`` is lost; with ``reopen`` (a function
    that opens the capture again) it is reopened with backoff for up to ``reconnect_for_s`` seconds,
    saying so through ``notice``; after that, or without ``reopen``, iteration raises SourceLost."""

    def __init__(self, cap: cv2.VideoCapture, description: str, open_timeout_s: float = 10.0,
                 reopen=None, stall_timeout_s: float = 5.0, reconnect_for_s: float = 30.0, notice=None) -> None:
        self.description = description
        self.live = True
        self.skipped: list[Path] = []
        self.grabbed = 0  # frames read from the device, delivered or not
        self.delivered = 0  # frames handed to the loop
        self.reconnects = 0
        self.reopen, self.stall_timeout_s, self.reconnect_for_s = reopen, stall_timeout_s, reconnect_for_s
        self.notice = notice or (lambda message: None)
        self._cond = threading.Condition()
        self._latest: tuple[int, float, np.ndarray] | None = None
        self._delivered = -1
        self._generation = 0
        self._ended = False
        self._stop = threading.Event()
        self._start(cap)
        with self._cond:
            if not self._cond.wait_for(lambda: self._latest is not None or self._ended, open_timeout_s):
                self.close()
                raise SourceError(f"{description} opened but sent no frame within {open_timeout_s:.0f} s")
        if self._latest is None:
            self.close()
            raise SourceError(f"{description} opened but sent no frame")

    def _start(self, cap) -> None:
        with self._cond:
            self._generation += 1
            self._ended = False
        self._thread = threading.Thread(target=self._read_loop, args=(cap, self._generation),
                                        name="edgevision-capture", daemon=True)
        self._thread.start()

    def _read_loop(self, cap, generation: int) -> None:
        """Read until the source ends, this reader is replaced (a stall), or the source closes. The
        capture is released here, by the thread that reads it, never under a blocked read."""
        try:
            while not self._stop.is_set():
                ok, image = cap.read()
                with self._cond:
                    if generation != self._generation:
                        return  # replaced after a stall: drop what this reader still had
                    if not ok:
                        self._ended = True
                        self._cond.notify_all()
                        return
                    self._latest = (self.grabbed, time.time(), image)
                    self.grabbed += 1
                    self._cond.notify_all()
        finally:
            cap.release()

    def _next(self) -> tuple[int, float, np.ndarray] | str:
        """The next new frame, or why there is none: 'ended' or 'stalled'."""
        with self._cond:
            fresh = self._cond.wait_for(
                lambda: self._ended or self._stop.is_set()
                or (self._latest is not None and self._latest[0] > self._delivered), self.stall_timeout_s)
            if self._latest is not None and self._latest[0] > self._delivered:
                self._delivered = self._latest[0]
                return self._latest
            return "ended" if fresh else "stalled"

    def _reconnect(self, why: str) -> None:
        problem = (f"{self.description} sent no frame for {self.stall_timeout_s:g} s" if why == "stalled"
                   else f"{self.description} ended")
        if self.reopen is None or self.reconnect_for_s <= 0:
            raise SourceLost(f"{problem} (lost; --reconnect retries a live source)")
        with self._cond:
            self._generation += 1  # a stalled reader, still blocked, is left to end on its own
        deadline, wait, attempt = time.monotonic() + self.reconnect_for_s, 0.5, 0
        while time.monotonic() < deadline and not self._stop.is_set():
            attempt += 1
            self.notice(f"{problem}; reconnecting (attempt {attempt})")
            try:
                cap = self.reopen()
            except SourceError:
                cap = None
            if cap is not None:
                self._start(cap)
                with self._cond:
                    started = self._cond.wait_for(
                        lambda: self._ended or (self._latest is not None and self._latest[0] > self._delivered),
                        min(self.stall_timeout_s, max(0.1, deadline - time.monotonic())))
                    if started and not self._ended:
                        self.reconnects += 1
                        self.notice(f"{self.description} is back (reconnect {self.reconnects})")
                        return
                    self._generation += 1
            time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            wait = min(wait * 2, 5.0)
        raise SourceLost(f"{problem}; gave up after {attempt} reconnect attempts in {self.reconnect_for_s:g} s")

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while not self._stop.is_set():
            got = self._next()
            if self._stop.is_set():
                return
            if isinstance(got, str):
                self._reconnect(got)
                continue
            _, stamp, image = got
            self.delivered += 1
            yield Frame(index, stamp, image)
            index += 1

    @property
    def dropped(self) -> int:
        """Frames the device sent that were replaced by a newer one before the loop took them."""
        return self.grabbed - self.delivered

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._generation += 1
            self._cond.notify_all()  # a loop waiting for the next frame stops waiting
        self._thread.join(timeout=2.0)

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _quiet_capture(*args) -> cv2.VideoCapture:
    """cv2.VideoCapture without OpenCV's warnings about devices that are not there."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(*args)
    finally:
        cv2.utils.logging.setLogLevel(previous)


def _open_capture(spec: SourceSpec, options: CaptureOptions, stall_timeout_s: float = 5.0
                  ) -> tuple[cv2.VideoCapture, str]:
    if spec.kind == "webcam":
        # V4L2 on Linux (where CAP_PROP_BUFFERSIZE works); elsewhere OpenCV's own choice.
        backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = _quiet_capture(int(spec.target), backend)
        what = f"camera {spec.target}"
    elif spec.kind == "device":
        cap = _quiet_capture(str(spec.target), cv2.CAP_V4L2)
        what = f"camera {spec.target}"
    elif spec.kind in ("csi", "gstreamer"):
        if not opencv_has_gstreamer():
            raise SourceError(f"{spec.kind} source needs GStreamer: {GSTREAMER_FIX}")
        pipeline = csi_pipeline(int(spec.target), options) if spec.kind == "csi" else str(spec.target)
        cap = _quiet_capture(pipeline, cv2.CAP_GSTREAMER)
        what = f"CSI camera {spec.target}" if spec.kind == "csi" else "GStreamer pipeline"
    elif str(spec.target).lower().startswith("rtsp") and opencv_has_gstreamer() and (
            jetson_model() or Path("/etc/nv_tegra_release").exists()):
        cap = _quiet_capture(rtsp_hw_pipeline(str(spec.target)), cv2.CAP_GSTREAMER)
        what = f"stream {mask_credentials(spec.target)} (H.264, decoded by the Jetson's nvv4l2decoder)"
    else:
        # FFmpeg gives up on a silent stream after twice the stall timeout (not its own 30 s): the loop
        # notices the stall first and says so; FFmpeg's timeout only frees the blocked reader.
        ms = int(stall_timeout_s * 2000)
        with captured_fds():  # FFmpeg's own lines ('Connection refused') stay out of the terminal
            cap = _quiet_capture(str(spec.target), cv2.CAP_FFMPEG,
                                 [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(ms, 5000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        what = f"stream {mask_credentials(spec.target)} (decoded on the CPU by FFmpeg)"
    if not cap.isOpened():
        cap.release()
        hint = {
            "webcam": "check that a camera is connected (ls /dev/video*) and not used by another program",
            "device": "check the device path (ls /dev/video*) and that no other program holds it",
            "csi": "check the ribbon cable and that nvargus-daemon runs (sudo systemctl restart nvargus-daemon)",
            "gstreamer": "test the pipeline with gst-launch-1.0 first; it must end in appsink",
            "url": "check the address and that the stream is reachable",
        }[spec.kind]
        raise SourceError(f"{what} did not open: {hint}")
    if spec.kind in ("webcam", "device"):
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        what += f": {set_v4l2_controls(cap, options)}"
    return cap, what


def open_source(text: str, realtime: bool = False, loop: bool = False, options: CaptureOptions | None = None,
                reconnect: bool | None = None, stall_timeout_s: float = 5.0, reconnect_for_s: float = 30.0,
                notice=None) -> Source:
    """Open a ``--source`` string as an iterable, closable source of frames. ``realtime`` and
    ``loop`` apply to video files only; asking to loop anything else is an error. ``options``: camera
    controls (size, rate and pixel format for V4L2 and CSI cameras, a flip for any source).
    ``reconnect`` (default: on for cameras and streams) reopens a live source that ends or stalls
    for ``stall_timeout_s``, for up to ``reconnect_for_s``; then iteration raises SourceLost."""
    options = options or CaptureOptions()
    spec = parse_source(text)
    if loop and spec.kind != "video":
        raise SourceError(f"--loop applies to video files; {text} is a {spec.kind} source")
    if options.controls and spec.kind not in ("webcam", "device", "csi"):
        raise SourceError(f"--width/--height/--fps/--fourcc are camera controls; {text} is a {spec.kind} source")
    if reconnect and not spec.live:
        raise SourceError(f"--reconnect applies to cameras and streams; {text} is a {spec.kind} source")
    if options.fourcc and spec.kind == "csi":
        raise SourceError("--fourcc is for V4L2 (USB) cameras; a CSI camera's format is set by its pipeline")
    if spec.kind == "images":
        source = ImageSource(list_images(Path(str(spec.target)), recursive=True), f"folder {spec.target}", notice)
    elif spec.kind == "image":
        source = ImageSource([Path(str(spec.target))], str(spec.target), notice)
    elif spec.kind == "video":
        source = VideoFileSource(str(spec.target), realtime=realtime, loop=loop)
    else:
        if stall_timeout_s <= 0 or reconnect_for_s < 0:
            raise SourceError("--stall-timeout must be above 0 s and --reconnect-timeout 0 s or more")
        cap, what = _open_capture(spec, options, stall_timeout_s)
        source = LiveSource(cap, what, reopen=(lambda: _open_capture(spec, options, stall_timeout_s)[0])
                            if reconnect in (None, True) else None, stall_timeout_s=stall_timeout_s,
                            reconnect_for_s=reconnect_for_s, notice=notice)
        if spec.kind == "csi":
            return source  # flipped by nvvidconv
    return FlippedSource(source, options.flip) if options.flip != "none" else source

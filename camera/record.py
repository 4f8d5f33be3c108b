"""``--record``: the frames with their overlay into a video that stays playable.

Codecs: ``.mp4`` is H.264 where this machine can write it (browsers play it): a Jetson's hardware
encoder or x264 through GStreamer when OpenCV has GStreamer, else FFmpeg's ``avc1`` encoder; without
any of them MPEG-4 Part 2 (``mp4v``: VLC and ffplay play it, browsers do not), said in one line.
``.webm`` is VP8 (browsers play it; FFmpeg's libvpx, in the pip wheels of OpenCV); ``.avi``/``.mkv``
are MJPG. The codec used is said when the file opens.

A full disk: ``cv2.VideoWriter`` reports no write errors, and an MP4 whose writes failed has no index
(nothing plays it). So the sink looks ahead: before each frame it checks the free space of the
file's filesystem and the process's file-size limit (``ulimit -f``), and when less than a reserve is
left it finishes the file (the index is written into the reserve) and stops the run with one line:
what was recorded stays playable. A file that stops growing while frames go in (a write error the
checks did not foresee) also stops the run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from ..deploy.errors import UserError
from ..deploy.images import check_new_output, check_takes_files
from ..deploy.providers import captured_fds
from .sources import opencv_has_gstreamer

RESERVE_BYTES = 4 << 20  # kept free for the file's index and the frames in the encoder's buffers
STUCK_FRAMES = 2000  # frames written without the file growing: its writes fail


def _gstreamer_h264(path: Path) -> list[str]:
    """GStreamer pipelines (for OpenCV's GStreamer writer) that make an H.264 MP4, best first."""
    if '"' in str(path):
        return []
    sink = f'h264parse ! qtmux ! filesink location="{path}"'
    return [
        # Jetson hardware encoder (Xavier, Orin NX/AGX; not Orin Nano, which has none)
        f"appsrc ! video/x-raw,format=BGR ! videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! "
        f"video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc ! {sink}",
        # software x264 (gstreamer1.0-plugins-ugly; h264parse is in -bad, qtmux in -good)
        f"appsrc ! video/x-raw,format=BGR ! videoconvert ! video/x-raw,format=I420 ! "
        f"x264enc speed-preset=ultrafast tune=zerolatency ! {sink}",
    ]


def _file_size_limit() -> int | None:
    """The process's file-size limit in bytes (``ulimit -f``), or None (none, or not a POSIX system)."""
    try:
        import resource
    except ImportError:
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else limit


class VideoSink:
    """Frames with their overlay into a video file; finished (playable) before a full disk stops it."""

    CODECS = {".mp4": ("avc1", "mp4v"), ".m4v": ("avc1", "mp4v"), ".mov": ("avc1", "mp4v"), ".webm": ("VP80",),
              ".avi": ("MJPG",), ".mkv": ("MJPG",)}
    NAMES = {"avc1": "H.264", "mp4v": "MPEG-4 Part 2", "VP80": "VP8", "MJPG": "Motion JPEG"}

    def __init__(self, path: Path, fps: float = 30.0, overwrite: bool = False, say=None) -> None:
        if Path(path).suffix.lower() not in self.CODECS:
            raise UserError(f"--record {path}: use one of {', '.join(sorted(self.CODECS))}")
        self.path = check_new_output(path, overwrite)
        # a folder that takes no files is said as such (OpenCV would only say that no encoder opened)
        check_takes_files(self.path.parent, f"cannot write {self.path}")
        self.fps = fps if fps and fps > 0 else 30.0
        self.say = say
        self.writer: cv2.VideoWriter | None = None
        self.codec = ""
        self.frames = 0
        self._last_size, self._since_growth = -1, 0
        self.stopped = ""  # why the recording was finished early (a full disk)

    def _open(self, size: tuple[int, int]) -> None:
        # OpenCV and FFmpeg print a few lines for each encoder that is missing (h264_v4l2m2m, ...): the
        # probe is quiet, and the line we print says what was chosen.
        with captured_fds():
            self._probe(size)

    def _probe(self, size: tuple[int, int]) -> None:
        suffix = self.path.suffix.lower()
        tried = []
        if suffix in (".mp4", ".m4v", ".mov") and opencv_has_gstreamer():
            for pipeline in _gstreamer_h264(self.path):
                writer = cv2.VideoWriter(pipeline, cv2.CAP_GSTREAMER, 0, self.fps, size)
                if writer.isOpened():
                    encoder = "nvv4l2h264enc" if "nvv4l2h264enc" in pipeline else "x264enc"
                    self.writer, self.codec = writer, f"H.264 (GStreamer {encoder})"
                    return
                tried.append("GStreamer H.264")
        for fourcc in self.CODECS[suffix]:
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), self.fps, size)
            if writer.isOpened():
                self.writer, self.codec = writer, f"{self.NAMES[fourcc]} ({fourcc})"
                return
            tried.append(fourcc)
        raise UserError(f"cannot write video {self.path}: OpenCV has no encoder for it here (tried {', '.join(tried)})")

    def write(self, image: np.ndarray, record: dict) -> bool:
        if self.stopped:
            raise UserError(self.stopped)
        if self.writer is None:
            h, w = image.shape[:2]
            self.size = (w, h)
            self._open(self.size)
            if self.say is not None:
                self.say(f"recording {self.path} as {self.codec}" + (
                    ": this OpenCV has no H.264 encoder, and browsers do not play mp4v; use .webm (VP8) for a "
                    "browser, or see the README" if "mp4v" in self.codec else ""))
        self._check_room()
        if (image.shape[1], image.shape[0]) != self.size:  # sources of mixed sizes (image folders)
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1
        return True

    def _check_room(self) -> None:
        """Stop (the file finished and playable) before the disk or the file-size limit runs out."""
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        free = shutil.disk_usage(self.path.parent).free
        limit = _file_size_limit()
        room = free if limit is None else min(free, limit - size)
        reserve = RESERVE_BYTES + 4 * size // max(self.frames, 1)  # the index and a few frames of slack
        if room < reserve:
            why = ("the disk is almost full" if room == free else f"the file-size limit ({limit >> 20} MB, "
                   "ulimit -f) is near")
            self._finish_and_stop(f"{why} ({room >> 20} MB left)")
        self._since_growth = 0 if size != self._last_size else self._since_growth + 1
        self._last_size = size
        if self._since_growth >= STUCK_FRAMES:
            self._finish_and_stop(f"the file stopped growing for {STUCK_FRAMES} frames (its writes fail)")

    def _finish_and_stop(self, why: str) -> None:
        self.writer.release()
        self.writer = None
        self.stopped = (f"recording stopped: {why}; {self.path} was finished at {self.frames} frames "
                        f"({self.frames / self.fps:.1f} s) and plays")
        raise UserError(self.stopped)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None

"""The native libraries' own lines kept out of the terminal: OpenCV's log (``[ WARN:0@1.6] ... Stream
timeout triggered``), FFmpeg's (``[mov,mp4,... @ 0x...] moov atom not found``) and libpng's (``libpng
error: IHDR: CRC error``). edgevision says what failed in one line of its own instead: a video that
does not open, an image skipped as unreadable, a stream that stalled.

Measured on opencv-python 5.1 (FFmpeg inside): OpenCV reads ``OPENCV_LOG_LEVEL`` once, at its first
log line, so its level is set with a call; FFmpeg's level is read from ``OPENCV_FFMPEG_LOGLEVEL`` once,
when the first video opens, so it must be in the environment before that. libpng has neither: it
writes its error to C's stderr and gives up, so a PNG whose bytes are damaged (cut short, or a
chunk whose checksum fails) is refused here before libpng sees it. A variable the user set
themselves is left alone (``OPENCV_LOG_LEVEL=INFO edgevision run ...`` shows OpenCV's lines again).
"""

from __future__ import annotations

import os
import struct
import sys
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def quiet_native_logs() -> None:
    """Silence OpenCV's and FFmpeg's logs in this process (and its children); call before the first
    video opens. Idempotent; needs no OpenCV (``edgevision doctor`` starts without one)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" in os.environ:
        return
    # SILENT, not ERROR: a damaged TIFF or BMP is logged at ERROR level, and every OpenCV failure that
    # matters comes back as a return value or an exception that edgevision words itself.
    os.environ["OPENCV_LOG_LEVEL"] = "SILENT"
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:  # imported already: it may have read the variable
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def png_intact(data: bytes | np.ndarray) -> bool:
    """True unless PNG bytes are damaged as libpng refuses them: cut short, or a critical chunk (IHDR,
    PLTE, IDAT, IEND) whose CRC fails. Data that is not a PNG is not judged here (True). An ancillary
    chunk with a bad CRC passes: libpng skips that chunk, with a warning, and decodes the image."""
    buf = memoryview(data).cast("B") if isinstance(data, np.ndarray) else memoryview(bytes(data))
    if bytes(buf[: len(PNG_SIGNATURE)]) != PNG_SIGNATURE:
        return True
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(buf):
        length, kind = struct.unpack_from(">I4s", buf, pos)
        end = pos + 12 + length  # length, type, data, CRC
        if end > len(buf):
            return False
        critical = not kind[0] & 0x20  # an upper-case first letter
        if critical and zlib.crc32(buf[pos + 4 : end - 4]) != struct.unpack_from(">I", buf, end - 4)[0]:
            return False
        if kind == b"IEND":
            return True
        pos = end
    return False

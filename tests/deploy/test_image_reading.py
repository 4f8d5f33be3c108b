"""The one place image files are read (deploy/images.py): it never opens a pipe or a device, reads an
image's size from its header before decoding it, and says why a file is skipped."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
from edgevision.deploy.errors import UserError
from edgevision.deploy.images import UnreadableImage, image_wh, load_image, read_image

FRAME = np.random.default_rng(0).integers(0, 255, (203, 301, 3), dtype=np.uint8)  # odd sizes: (h, w) vs (w, h)


@pytest.mark.parametrize("ext, params", [
    (".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".bmp", []),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),  # lossy: VP8
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # lossless: VP8L
    (".tiff", []),
])
def test_the_header_gives_the_size_opencv_decodes(ext, params):
    ok, encoded = cv2.imencode(ext, FRAME, params)
    assert ok
    if ext == ".webp":
        assert encoded.tobytes()[12:16] == (b"VP8L" if params[1] > 100 else b"VP8 ")
    assert image_wh(encoded.tobytes()) == (301, 203)
    assert cv2.imdecode(encoded, cv2.IMREAD_COLOR).shape[:2] == (203, 301)


def test_a_jpeg_size_is_found_after_a_large_exif_segment():
    ok, encoded = cv2.imencode(".jpg", FRAME)
    data = encoded.tobytes()
    app1 = b"\xff\xe1" + struct.pack(">H", 65_000) + b"Exif\x00\x00" + bytes(65_000 - 8)
    data = data[:2] + app1 * 3 + data[2:]  # 195 kB of metadata before the frame header
    assert image_wh(data) == (301, 203)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (203, 301)


def test_headers_of_other_layouts_and_formats():
    vp8x = b"RIFF" + bytes(4) + b"WEBPVP8X" + bytes(8) + (29_999).to_bytes(3, "little") + (9).to_bytes(3, "little")
    assert image_wh(vp8x) == (30_000, 10)
    big_tiff = (b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + struct.pack("<Q", 2)
                + struct.pack("<HHQQ", 256, 16, 1, 70_000) + struct.pack("<HHQQ", 257, 4, 1, 5))
    assert image_wh(big_tiff) == (70_000, 5)
    core_bmp = b"BM" + bytes(12) + struct.pack("<IHH", 12, 640, 480) + bytes(8)
    assert image_wh(core_bmp) == (640, 480)
    ok, ppm = cv2.imencode(".ppm", FRAME)
    assert image_wh(ppm.tobytes()) is None  # OpenCV's own limit covers what this does not read
    for cut in (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe1\x00", b"BM\x00", b"II*\x00\xff\xff\xff\x00"):
        assert image_wh(cut) is None  # too short to say: never an exception


def _forged_png(w: int, h: int) -> bytes:
    """A small PNG whose header claims ``w`` x ``h`` (its data is a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(_forged_png(20_000, 20_000))
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(a))
    with pytest.raises(UnreadableImage, match=r"bomb.png is 20000x20000 \(400 megapixels\), over the limit of 100"):
        load_image(path)
    assert read_image(path) is None and decoded == []  # the header was enough
    monkeypatch.setenv("EDGEVISION_MAX_IMAGE_PIXELS", "0")  # no limit: handed to OpenCV
    read_image(path)
    assert len(decoded) == 1


def test_the_pixel_limit_comes_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), FRAME)
    monkeypatch.setenv("EDGEVISION_MAX_IMAGE_PIXELS", str(301 * 203))
    assert load_image(path).shape == (203, 301, 3)
    monkeypatch.setenv("EDGEVISION_MAX_IMAGE_PIXELS", str(301 * 203 - 1))
    with pytest.raises(UnreadableImage, match="over the limit"):
        load_image(path)
    monkeypatch.setenv("EDGEVISION_MAX_IMAGE_PIXELS", "-5")
    with pytest.raises(UserError, match="must be a number of pixels"):
        read_image(path)  # a setting that is wrong is said, not taken as 'unreadable'


def test_pipes_folders_and_missing_files_say_why(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    for name, reason in (("pipe.png", "is a pipe, not an image file"), ("dir.png", "is a folder, not an image file"),
                         ("empty.png", "is empty"), ("text.png", "is not an image OpenCV can decode"),
                         ("missing.png", "cannot read")):
        with pytest.raises(UnreadableImage, match=reason):
            load_image(tmp_path / name)
        assert read_image(tmp_path / name) is None


def test_reading_a_pipe_returns_at_once_in_a_fresh_process(tmp_path):
    """np.fromfile on a pipe waits for a writer forever: the subprocess's timeout turns a hang into a failure."""
    os.mkfifo(tmp_path / "pipe.jpg")
    code = f"from edgevision.deploy.images import read_image; print(read_image({str(tmp_path / 'pipe.jpg')!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "None", proc.stderr

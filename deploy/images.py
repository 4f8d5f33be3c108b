"""Image files: which files are images, reading one, finding them in folders, and refusing to
replace an output file (or an input) by accident. numpy + OpenCV only; used by every floor above."""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from .errors import UserError
from .nativelog import png_intact

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# A PNG of one colour, 20000x20000, is 0.4 MB on disk and 1.2 GB decoded (2.3 GB peak in OpenCV): images
# over this many pixels are skipped, their size read from the header before anything is decoded.
MAX_PIXELS_ENV = "EDGEVISION_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 100_000_000


_CV_LIMIT = "OPENCV_IO_MAX_IMAGE_PIXELS"  # OpenCV's own limit, read once as it loads: see edgevision/__init__


class UnreadableImage(UserError):
    """An image file that is skipped: not a regular file, not readable, over the pixel limit, or not an
    image OpenCV decodes. The message names the file and says which."""


def max_image_pixels() -> int | None:
    """The largest image (width x height) that is decoded: EDGEVISION_MAX_IMAGE_PIXELS (0: no limit),
    else 100 megapixels."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        value = -1
    if value < 0:
        raise UserError(f"{MAX_PIXELS_ENV} must be a number of pixels (0: no limit), got {text[:40]!r}")
    return value or None


def _png_wh(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR" or len(data) < 24:
        return None
    return struct.unpack(">II", data[16:24])


# JPEG frame headers (SOF0..SOF15 but DHT, JPG and DAC, which share the range) carry the size.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_wh(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before them
            return None
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF:
            if pos + 9 > len(data):
                return None
            h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return (w, h) if h else None  # height 0: given later (DNL); OpenCV's own limit holds
        pos += 2 + length
    return None


def _bmp_wh(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)  # a negative height is a top-down bitmap


def _webp_wh(data: bytes) -> tuple[int, int] | None:
    kind, body = data[12:16], data[20:30]
    if kind == b"VP8 " and len(body) >= 10:
        w, h = struct.unpack("<HH", body[6:10])
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L" and len(body) >= 5:
        (bits,) = struct.unpack("<I", body[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(body) >= 10:
        return int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1
    return None


def _tiff_wh(data: bytes) -> tuple[int, int] | None:
    """The first image's size (the one OpenCV decodes), from classic TIFF or BigTIFF."""
    order = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack(order + "H", data[2:4])
    if version == 42:
        (offset,) = struct.unpack(order + "I", data[4:8])
        count_fmt, entry_size, value_at = "H", 12, 8
    elif version == 43:
        (offset,) = struct.unpack(order + "Q", data[8:16])
        count_fmt, entry_size, value_at = "Q", 20, 12
    else:
        return None
    count_size = struct.calcsize(count_fmt)
    if offset + count_size > len(data):
        return None
    (count,) = struct.unpack(order + count_fmt, data[offset : offset + count_size])
    sizes: dict[int, int] = {}
    for i in range(min(count, 4096)):
        at = offset + count_size + i * entry_size
        if at + entry_size > len(data):
            break
        tag, kind = struct.unpack(order + "HH", data[at : at + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT, LONG or LONG8
            fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if fmt is None:
                return None
            (sizes[tag],) = struct.unpack(order + fmt, data[at + value_at : at + value_at + struct.calcsize(fmt)])
    return (sizes[256], sizes[257]) if len(sizes) == 2 else None


def image_wh(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, BMP, WebP or TIFF file's bytes, without decoding;
    None for other formats or a header too short to say."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return _png_wh(data)
        if data[:2] == b"\xff\xd8":
            return _jpeg_wh(data)
        if data[:2] == b"BM":
            return _bmp_wh(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_wh(data)
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff_wh(data)
    except struct.error:
        return None
    return None


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """The image files in ``folder`` (and its sub-folders when ``recursive``, as predict reads them), in
    name order; hidden folders such as collect's .trash are left out."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def load_image(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decode an image file (to BGR uint8 by default; ``flags`` as cv2.imdecode's). Raises UnreadableImage,
    which names the file and the reason, for a pipe, device or folder (never opened: a pipe would wait
    for a writer forever), a file that cannot be read, one over :func:`max_image_pixels` (measured from its
    header first), or one OpenCV does not decode."""
    limit = max_image_pixels()
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UnreadableImage(f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else "a device or socket"
        raise UnreadableImage(f"{path} is {what}, not an image file")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise UnreadableImage(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    if data.size == 0:
        raise UnreadableImage(f"{path} is empty")
    if not png_intact(data):  # refused here, before libpng prints to stderr
        raise UnreadableImage(f"{path} is a damaged PNG (cut short, or a bad checksum)")
    wh = image_wh(memoryview(data))
    if limit and wh and wh[0] * wh[1] > limit:
        raise UnreadableImage(f"{path} is {wh[0]}x{wh[1]} ({wh[0] * wh[1] / 1e6:.3g} megapixels), over the limit "
                              f"of {limit / 1e6:g} megapixels ({MAX_PIXELS_ENV} raises it)")
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as exc:  # OpenCV's own pixel limit (OPENCV_IO_MAX_IMAGE_PIXELS), or out of memory
        reason = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else "cv2.error"
        if "MAX_IMAGE_PIXELS" in reason:
            reason = f"over OpenCV's pixel limit (OPENCV_IO_MAX_IMAGE_PIXELS={os.environ.get(_CV_LIMIT, '')})"
        raise UnreadableImage(f"{path} could not be decoded: {reason}") from exc
    if image is None:
        raise UnreadableImage(f"{path} is not an image OpenCV can decode")
    return image


def read_image(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """Decode an image file to BGR uint8; None when it cannot be read or decoded (:func:`load_image`
    says why)."""
    try:
        return load_image(path, flags)
    except UnreadableImage:
        return None


def collect_images(paths: list[str]) -> list[Path]:
    """Files as given, folders searched recursively in name order; missing paths are an error."""
    found: list[Path] = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            found.extend(list_images(path, recursive=True))
        elif path.is_file():
            found.append(path)
        elif path.exists():  # a pipe would wait for a writer forever; a device never ends
            raise UserError(f"{text} is not a regular file (a pipe or device): give image files or folders")
        else:
            raise UserError(f"not found: {text}")
    if not found:
        raise UserError(f"no images in {', '.join(paths)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def check_takes_files(folder: Path, what: str) -> None:
    """``folder`` (or, while it does not exist yet, the nearest folder above it) takes new files, tried
    with a temporary file that is gone at once: a read-only disk or a folder without rights is said
    before any work, as ``what: reason`` (e.g. 'cannot write out.mp4: Read-only file system')."""
    import tempfile

    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UserError(f"{what}: {exc.strerror or exc}") from exc


@contextmanager
def temp_beside(out: Path, prefix: str = ".export-") -> Iterator[Path]:
    """A temporary file name in ``out``'s folder ('.export-*.onnx.part' for an .onnx), so that the final
    :func:`publish` is one atomic rename; removed on the way out unless it was published. A model is
    written there, checked, and only then published: a failure leaves nothing half-made under ``out``.
    The name is hidden and ends in '.part', so no image or CSV reader takes it for data."""
    import os
    import tempfile

    fd, name = tempfile.mkstemp(prefix=prefix, suffix=f"{Path(out).suffix}.part", dir=Path(out).parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except OSError as exc:  # a full disk names the file the user asked for, not the source or the temporary one
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        raise UserError(f"cannot write {out}: {exc.strerror} (nothing was written there)") from exc
    finally:
        tmp.unlink(missing_ok=True)


def publish(tmp: Path, out: Path, durable: bool = False) -> None:
    """Move a finished temporary file into place, with ordinary permissions (mkstemp's are 0600).
    ``durable``: its bytes reach the disk before the rename and the folder's new entry after it, so a
    crash or a power cut leaves the old file or the new one whole (never a short one under ``out``)."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    if durable:
        _fsync(tmp)
    os.replace(tmp, out)
    if durable:
        _fsync(Path(out).parent)


def _fsync(path: Path) -> None:
    import errno
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # a folder on a filesystem that cannot sync folders: its files were synced
        if not (path.is_dir() and exc.errno in (errno.EINVAL, errno.ENOTSUP)):
            raise
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and check that all of it is there: a full disk or a file-size limit
    raises OSError, never leaves a short file that looks written."""
    import errno

    with open(path, "wb") as f:
        f.write(data)
    size = os.stat(path).st_size
    if size != len(data):
        raise OSError(errno.ENOSPC, f"{size} of {len(data)} bytes written", str(path))


def check_outside_inputs(folder: Path, inputs: list[Path], flag: str) -> None:
    """Refuse an output ``folder`` that is an input folder or inside one (folders are read recursively), or
    the folder of an input file: what is written there would be read as input by the next run."""
    out = Path(folder).expanduser().resolve()
    given = [Path(p).expanduser() for p in inputs]
    folders = {p.resolve() for p in {p for p in given if p.is_dir()}}
    beside = {p.resolve() for p in {p.parent for p in given if not p.is_dir()}}
    for home in sorted(folders | beside):
        if out == home or (home in folders and home in out.parents):
            where = "is" if out == home else "is inside"
            raise UserError(f"{flag} {folder} {where} the input folder {home}: the next run would read its "
                            "files as images; choose a folder outside the inputs")


def check_not_an_input(out: Path, inputs: dict[str, Path], flag: str) -> None:
    """Refuse an output file that is one of ``inputs`` ({'the model': path, ...}), even with --overwrite:
    the same file by any name (a link, ../), as os.path.samefile sees it."""
    out = Path(out).expanduser()
    for name, given in inputs.items():
        try:
            same = os.path.samefile(out, Path(given).expanduser())
        except OSError:  # one of them does not exist (yet): not the same file
            same = False
        if same:
            raise UserError(f"{flag} {out} is {name} itself: choose another file name (even with --overwrite)")


def check_new_output(path: Path, overwrite: bool) -> Path:
    """Refuse to replace an existing file unless asked; create the parent folder."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists: choose another name or pass --overwrite")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder for {path}: {exc.strerror}") from exc
    return path

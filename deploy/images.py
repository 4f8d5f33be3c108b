"""Image files: which files are images, reading one, finding them in folders, and refusing to
replace an output file by accident. numpy + OpenCV only; used by every floor above."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from .errors import UserError
from .nativelog import png_intact

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """The image files in ``folder`` (and its sub-folders when ``recursive``, as predict reads them), in
    name order; hidden folders such as collect's .trash are left out."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_image(path: Path) -> np.ndarray | None:
    """Decode an image file to BGR uint8; None when it cannot be read or decoded."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0 or not png_intact(data):  # a damaged PNG: refused here, before libpng prints to stderr
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def collect_images(paths: list[str]) -> list[Path]:
    """Files as given, folders searched recursively in name order; missing paths are an error."""
    found: list[Path] = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            found.extend(list_images(path, recursive=True))
        elif path.is_file():
            found.append(path)
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
def temp_beside(out: Path) -> Iterator[Path]:
    """A temporary file name in ``out``'s folder ('.export-*.onnx.part' for an .onnx), so that the final
    :func:`publish` is one atomic rename; removed on the way out unless it was published. A model is
    written there, checked, and only then published: a failure leaves nothing half-made under ``out``."""
    import os
    import tempfile

    fd, name = tempfile.mkstemp(prefix=".export-", suffix=f"{Path(out).suffix}.part", dir=Path(out).parent)
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


def publish(tmp: Path, out: Path) -> None:
    """Move a finished temporary file into place, with ordinary permissions (mkstemp's are 0600)."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, out)


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

"""The files of a collected dataset, kept safe: one collector per folder (:func:`dataset_lock`), every
photo and every change of a label CSV written whole (:func:`write_file`: a hidden temporary file beside
it, flushed to the disk, renamed into place), so a full disk or a crash leaves the files as they were,
never a short photo or a short CSV; label CSVs read with every cell checked (:func:`read_label_rows`),
Excel's BOM included."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from ..deploy.errors import UserError, os_cause
from ..deploy.images import publish, temp_beside

LOCK_FILE = ".collect.lock"  # held (flock) by the one collector working on the folder


@contextmanager
def dataset_lock(root: Path) -> Iterator[None]:
    """Hold the dataset folder ``root`` (made if new) for this process alone while collecting or reviewing:
    a second collector on it is refused in one line that names the holder's pid. The lock is an advisory
    ``flock`` on ``root/.collect.lock``; the OS lets go of it when the process ends however it ends, so a
    crash leaves no stale lock. Two collectors would each rewrite ``labels.csv`` from what they read and
    lose the other's rows. A folder made here is removed again if nothing was saved in it."""
    import fcntl

    made = [p for p in (root, *root.parents) if not p.exists()]  # the new folders, deepest first
    path = root / LOCK_FILE
    for _ in range(20):  # a holder letting go removes the file: lock the file that is there, not a removed one
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            continue  # a collector that made the folder removed it, empty, as it ended
        except OSError as exc:
            raise UserError(f"cannot save into {root}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                pid = f" (pid {holder})" if holder.isdigit() else ""
                raise UserError(f"{root} is in use by another edgevision collect{pid}: one collector per folder; "
                                "finish that one first (q), or collect into another folder") from None
            raise UserError(f"cannot lock {root} for collecting: {exc.strerror or exc}") from exc
        try:
            held = os.fstat(fd)
            current = os.stat(path)
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    else:
        raise UserError(f"cannot lock {root} for collecting: its lock file keeps changing")
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # said to a second collector; not needed (a full disk)
        except OSError:
            pass
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: whoever opens it next makes a new file
        os.close(fd)
        for folder in made:
            try:
                folder.rmdir()  # only while empty: a folder with a photo in it stays, and those above it
            except OSError:
                break


@contextmanager
def saving(folder: Path, what: str = "save into") -> Iterator[None]:
    """A failed write (a full disk, a file-size limit, a folder gone read-only) -> one line naming the folder."""
    try:
        yield
    except (OSError, UserError) as exc:
        cause = os_cause(exc)  # write_file's full disk comes as a UserError
        if cause is None:
            raise
        raise UserError(f"cannot {what} {folder}: {cause.strerror or cause} (nothing half-written is left; what "
                        "was saved before is kept)") from cause


def write_file(path: Path, data: bytes) -> None:
    """``data`` as ``path``, all or nothing: written under a hidden temporary name beside it, flushed to the
    disk, then renamed into place, so a full disk or a crash never leaves part of it under ``path``."""
    with temp_beside(path, prefix=".collect-") as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
        publish(tmp, path, durable=True)


def write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise UserError(f"could not encode a frame of shape {image.shape} as JPEG")
    write_file(path, data.tobytes())


def _csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def _read_table(csv_path: Path) -> list[list[str]]:
    """A CSV's rows as cells, the header first, blank lines left out; [] for an empty file."""
    with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's 'CSV UTF-8' starts with a BOM
        return [row for row in csv.reader(f) if row]


def append_rows(csv_path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    """Add rows to a CSV (made with ``columns`` when new or empty), all or nothing: the file's bytes and the
    rows go into a new file that replaces it, so a full disk leaves the old file whole, never half a row.
    Cells go under the file's own header (its order, its extra columns left empty)."""
    old = csv_path.read_bytes() if csv_path.is_file() else b""
    if not old.lstrip(b"\xef\xbb\xbf \t\r\n"):
        old = b""  # empty (an older collect could leave it so on a full disk): start it again
    header = next(csv.reader(io.StringIO(old.decode("utf-8-sig"), newline=""))) if old else columns  # row 1 alone
    text = _csv_text(([] if old else [header]) + [[row.get(c, "") for c in header] for row in rows])
    gap = b"\r\n" if old and not old.endswith(b"\n") else b""  # a last line without its line end
    write_file(csv_path, old + gap + text.encode("utf-8"))


def _check_row(csv_path: Path, line: int, row: dict, fields: list[str], columns: list[str]) -> None:
    """One line naming the file, the line and the cell for a row training could not read."""
    where = f"{csv_path} line {line}"
    if None in row:
        raise UserError(f"{where} has {len(fields) + len(row[None])} cells, the header {len(fields)}: "
                        "fix or remove that row")
    if not (row.get("file") or "").strip():
        raise UserError(f"{where}: the file cell is empty: fix or remove that row")
    for column in columns[1:]:
        value = row.get(column)
        try:
            ok = math.isfinite(float(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            shown = "missing" if value is None else repr(value)
            raise UserError(f"{where}: {column} is {shown}, not a number of pixels: fix or remove that row")


def read_label_rows(csv_path: Path, columns: list[str], asked: str) -> list[dict[str, str]]:
    """The rows of a labels CSV that must have ``columns`` (``asked``: the option that named them, for the
    message), each checked: a bad cell is one line naming the file, the line and the cell."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: a BOM (Excel) is no part of 'file'
            reader = csv.DictReader(f)
            try:
                fields = reader.fieldnames
                if fields is None:
                    return []  # an empty file (an older collect left it so on a full disk): no rows yet
                missing = [c for c in columns if c not in fields]
                if missing:
                    raise UserError(f"{csv_path} has the columns {', '.join(fields)}, not those of {asked} "
                                    f"(missing {', '.join(missing)}): use the same point names or another folder")
                rows = []
                for row in reader:
                    _check_row(csv_path, reader.line_num, row, fields, columns)
                    rows.append(row)
                return rows
            except csv.Error as exc:
                raise UserError(f"{csv_path} line {reader.line_num}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"{csv_path} is not UTF-8 text: save it as 'CSV UTF-8'") from exc


def move_rows(csv_path: Path, file_name: str, trash_csv: Path, columns: list[str]) -> None:
    """Move ``file_name``'s rows from a labels CSV to ``trash_csv``, each file whole at every step; every
    other row (and cell, and column) stays as it is."""
    table = _read_table(csv_path) if csv_path.is_file() else []
    if not table:
        return
    header, rows = table[0], table[1:]
    at = header.index("file")
    removed = [r for r in rows if len(r) > at and r[at] == file_name]
    if removed:
        append_rows(trash_csv, [dict(zip(header, r)) for r in removed], columns)
        write_file(csv_path, _csv_text([header] + [r for r in rows if r not in removed]).encode("utf-8"))

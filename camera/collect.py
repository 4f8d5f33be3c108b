"""Collect a dataset from frames: class labels by key, named (x, y) points by click.

The :class:`Collector` is the whole state machine (active class, counts, auto-capture,
pending points, undo, file writing) and knows nothing of windows: it takes frames, key codes
and clicks in full-resolution pixels, so tests drive it directly. ``collect_window.py`` maps a
live OpenCV window's events onto it.

Layouts written (the ones ``edgevision train`` reads):

- classes: ``DATA/<class>/*.jpg``; with a validation share, ``DATA/train/<class>/`` and
  ``DATA/val/<class>/``.
- points: ``DATA/images/*.jpg`` and ``DATA/labels.csv`` with columns ``file, <name>_x, <name>_y``
  for each point name, in full-resolution pixels (the layout of the shared nose set); with a
  validation share, the same under ``DATA/train/`` and ``DATA/val/``.

Nothing is ever overwritten (names carry a timestamp and a random part) or deleted: undo and
review move files to ``DATA/.trash/``, which training skips. Every photo and every change of a CSV
is written whole under a hidden temporary name, flushed to the disk and renamed into place, so a
full disk or a crash leaves the files as they were before, never a short photo or CSV. One
collector (collect or review) works on a folder at a time. The files' side of this is collect_files.py.
"""

from __future__ import annotations

import random
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..deploy.draw import color_for, put_label
from ..deploy.errors import UserError, shell_quote
from ..deploy.images import IMAGE_SUFFIXES
from .collect_files import append_rows, move_rows, read_label_rows, saving, write_jpeg

TRASH = ".trash"
LABELS_CSV = "labels.csv"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# Key codes from cv2.waitKeyEx: X11/GTK, Qt and Windows spell the arrows differently.
KEY_ESC, KEY_TAB, KEY_SPACE, KEY_BACKSPACE = 27, 9, 32, 8
KEYS_ENTER = frozenset({13, 10, 65293, 65421, 0x1000004, 0x1000005})
KEYS_BACKSPACE = frozenset({8, 65288, 0x1000003})
KEYS_DELETE = frozenset({65535, 0x1000007, 3014656, ord("d")})
KEYS_LEFT = frozenset({65361, 0x1000012, 2424832, ord("[")})
KEYS_RIGHT = frozenset({65363, 0x1000014, 2555904, ord("]")})
KEYS_TAB = frozenset({9, 0x1000001})
KEYS_QUIT = frozenset({ord("q"), ord("Q")})


def parse_names(text: str, what: str) -> tuple[str, ...]:
    """'a,b,c' -> ('a', 'b', 'c'); names become folder names and CSV columns, so keep them plain."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise UserError(f"--{what} needs at least one name, e.g. --{what} {'nose' if what == 'points' else 'a,b'}")
    for name in names:
        if not NAME_RE.fullmatch(name):
            raise UserError(f"--{what}: {name!r} is not a plain name (letters, digits, '_', '-', '.')")
    if len(set(names)) != len(names):
        raise UserError(f"--{what} names must be unique, got {', '.join(names)}")
    return names


def parse_split(text: str | None) -> float:
    """'val=0.2' -> 0.2; None -> 0.0 (no validation share)."""
    if text is None:
        return 0.0
    m = re.fullmatch(r"\s*val\s*=\s*([0-9.]+)\s*", text)
    if not m:
        raise UserError(f"--split looks like val=0.2, got {text!r}")
    value = float(m.group(1))
    if not 0.0 < value < 1.0:
        raise UserError(f"--split val=X needs 0 < X < 1, got {value}")
    return value


@dataclass(frozen=True)
class CollectOptions:
    root: Path
    classes: tuple[str, ...] = ()
    points: tuple[str, ...] = ()
    val_fraction: float = 0.0  # share of saves that go to val/ (0: no split)
    seed: int = 0
    auto_rate: float = 2.0  # saves per second while auto-capture is on
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if bool(self.classes) == bool(self.points):
            raise UserError("give either --classes a,b,... or --points name,... (one of them)")
        if self.classes and len(self.classes) < 2:
            raise UserError("--classes needs at least two classes for a classifier")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserError(f"the validation share must be within 0..1, got {self.val_fraction}")
        if self.auto_rate <= 0:
            raise UserError(f"--rate must be above 0 saves per second, got {self.auto_rate}")
        root = Path(self.root)
        if root.exists() and not root.is_dir():
            raise UserError(f"{root} is a file, not a folder: choose a folder for the dataset")
        object.__setattr__(self, "root", root)


@dataclass(frozen=True)
class Saved:
    path: Path  # the image written
    split: str  # "" (no split), "train" or "val"
    label: str  # class name, or "" in points mode
    points: tuple[tuple[float, float], ...] = ()


@dataclass
class Flash:
    text: str
    until: float
    color: tuple[int, int, int] = (255, 255, 255)


def _move_to_trash(root: Path, path: Path) -> Path:
    """Move ``path`` under root/.trash/ keeping its relative place; never replace anything there."""
    target = root / TRASH / path.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target = target.with_name(f"{target.stem}-{uuid.uuid4().hex[:6]}{target.suffix}")
    shutil.move(str(path), str(target))
    return target


def _split_layout(root: Path) -> bool | None:
    """True if root holds train/ and val/, False if it holds other data, None if it is empty or new."""
    if not root.is_dir():
        return None
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not entries:
        return None
    return (root / "train").is_dir() or (root / "val").is_dir()


class Collector:
    """The collection state machine. Call ``on_key``/``on_click``/``tick`` with each frame."""

    def __init__(self, options: CollectOptions) -> None:
        self.options = options
        self.root = options.root
        self.points_mode = bool(options.points)
        self.names = options.points if self.points_mode else options.classes
        existing_split = _split_layout(self.root)
        wants_split = options.val_fraction > 0
        if existing_split is not None and existing_split != wants_split:
            have = "a train/val split" if existing_split else "no train/val split"
            fix = "pass --split val=0.2 (or the share you used)" if existing_split else "drop --split"
            raise UserError(f"{self.root} already holds {have}: {fix} to keep adding to it")
        self.splits = ("train", "val") if wants_split else ("",)
        self.counts: dict[tuple[str, str], int] = {}
        self._scan_existing()
        total = sum(self.counts.values())
        self.rng = random.Random(f"{options.seed}:{total}")  # resumed runs continue a fresh, seeded sequence
        self.active = 0
        self.auto = False
        self._next_auto = 0.0
        self.undo_stack: list[Saved] = []
        self.saved_this_session = 0
        self.frozen: np.ndarray | None = None  # points mode: the frame being labelled
        self.pending: list[tuple[float, float]] = []
        self.flash: Flash | None = None
        self.message = ""  # the last hint or error shown on screen
        self.stopped_by = ""  # "Ctrl-C" or "SIGTERM" when a signal ended the session

    # --- layout -----------------------------------------------------------------------------
    def folder(self, split: str, label: str = "") -> Path:
        base = self.root / split if split else self.root
        return base / ("images" if self.points_mode else label)

    def labels_csv(self, split: str) -> Path:
        return (self.root / split if split else self.root) / LABELS_CSV

    def columns(self) -> list[str]:
        return ["file"] + [f"{n}_{axis}" for n in self.names for axis in ("x", "y")]

    def _scan_existing(self) -> None:
        for split in self.splits:
            if self.points_mode:
                csv_path = self.labels_csv(split)
                rows = self._read_rows(csv_path) if csv_path.is_file() else []
                self.counts[(split, "")] = len(rows)
            else:
                for name in self.names:
                    folder = self.folder(split, name)
                    n = sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else 0
                    self.counts[(split, name)] = n

    def _read_rows(self, csv_path: Path) -> list[dict[str, str]]:
        return read_label_rows(csv_path, self.columns(), f"--points {','.join(self.names)}")

    def count(self, label: str = "") -> int:
        return sum(n for (_, name), n in self.counts.items() if name == label)

    def _choose_split(self) -> str:
        if self.splits == ("",):
            return ""
        return "val" if self.rng.random() < self.options.val_fraction else "train"

    def _new_path(self, split: str, label: str) -> Path:
        folder = self.folder(split, label)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create {folder}: {exc.strerror}") from exc
        stem = label or "img"
        while True:  # a name no file has (the random part makes a second try rare)
            path = folder / f"{stem}_{time.strftime('%Y%m%d-%H%M%S')}_{uuid.uuid4().hex[:8]}.jpg"
            if not path.exists():
                return path

    # --- classes ----------------------------------------------------------------------------
    def save_class(self, frame: np.ndarray, index: int | None = None, now: float | None = None) -> Saved:
        index = self.active if index is None else index
        label = self.names[index]
        split = self._choose_split()
        path = self._new_path(split, label)
        with saving(path.parent):
            write_jpeg(path, frame, self.options.jpeg_quality)
        self.counts[(split, label)] = self.counts.get((split, label), 0) + 1
        return self._saved(Saved(path, split, label), now)

    def select(self, index: int) -> None:
        self.active = index % len(self.names)
        self.message = f"active: {self.names[self.active]}"

    def toggle_auto(self, now: float) -> None:
        self.auto = not self.auto
        self._next_auto = now
        self.message = f"auto-capture {'on' if self.auto else 'off'} ({self.options.auto_rate:g}/s)"

    def tick(self, frame: np.ndarray, now: float) -> Saved | None:
        """Auto-capture: save the active class when one is due."""
        if not (self.auto and not self.points_mode and now >= self._next_auto):
            return None
        self._next_auto = max(now, self._next_auto + 1.0 / self.options.auto_rate)
        return self.save_class(frame, now=now)

    # --- points -----------------------------------------------------------------------------
    def freeze(self, frame: np.ndarray) -> None:
        if self.frozen is None:
            self.frozen = frame.copy()
            self.pending = []
            self.message = f"click {self.names[0]}"

    def click(self, x: float, y: float, frame: np.ndarray) -> None:
        """A click at (x, y) in full-resolution pixels of ``frame``."""
        if not self.points_mode:
            self.message = "clicks place points only with --points"
            return
        self.freeze(frame)
        h, w = self.frozen.shape[:2]
        if not (0 <= x < w and 0 <= y < h):
            self.message = f"({x:.0f}, {y:.0f}) is outside the {w}x{h} frame"
            return
        if len(self.pending) == len(self.names):
            self.message = "all points placed: Enter saves, Backspace removes the last, Esc discards"
            return
        self.pending.append((float(x), float(y)))
        remaining = self.names[len(self.pending):]
        self.message = f"click {remaining[0]}" if remaining else "Enter saves, Esc discards"

    def remove_last_point(self) -> None:
        if self.pending:
            self.pending.pop()
            self.message = f"click {self.names[len(self.pending)]}"

    def discard(self) -> None:
        self.frozen, self.pending = None, []
        self.message = "discarded"

    def confirm(self, now: float | None = None) -> Saved | None:
        if self.frozen is None or len(self.pending) != len(self.names):
            missing = self.names[len(self.pending):] if self.frozen is not None else self.names
            self.message = f"place {', '.join(missing)} first"
            return None
        split = self._choose_split()
        path = self._new_path(split, "")
        csv_path = self.labels_csv(split)
        row = dict(zip(self.columns(), [path.name] + [f"{v:.1f}" for xy in self.pending for v in xy]))
        with saving(csv_path.parent):
            write_jpeg(path, self.frozen, self.options.jpeg_quality)
            try:
                append_rows(csv_path, [row], self.columns())
            except BaseException:  # a full disk, Ctrl-C: a photo without its row is no data; it goes again
                path.unlink(missing_ok=True)
                raise
        saved = Saved(path, split, "", tuple(self.pending))
        self.counts[(split, "")] = self.counts.get((split, ""), 0) + 1
        self.frozen, self.pending = None, []
        return self._saved(saved, now)

    # --- undo -------------------------------------------------------------------------------
    def _saved(self, saved: Saved, now: float | None) -> Saved:
        self.undo_stack.append(saved)
        self.saved_this_session += 1
        where = f"{saved.split}/" if saved.split else ""
        what = saved.label or "points"
        self.message = f"saved {where}{what} ({self.count(saved.label)})"
        self.flash = Flash(f"saved {what}", (now if now is not None else time.time()) + 0.25)
        return saved

    def undo(self) -> Saved | None:
        """Move the last save of this session to DATA/.trash/ (its CSV row too); delete nothing."""
        if not self.undo_stack:
            self.message = "nothing to undo"
            return None
        saved = self.undo_stack[-1]
        self.trash(saved.path, saved.split)
        self.undo_stack.pop()
        self.counts[(saved.split, saved.label)] -= 1
        self.saved_this_session -= 1
        self.message = f"undone: {saved.path.name} moved to {TRASH}/"
        return saved

    def trash(self, path: Path, split: str) -> None:
        """Move a saved photo to DATA/.trash/ (in points mode its CSV row first), in an order that a failure at
        any step (a full disk) leaves the photo with its row, or the row gone and the photo not yet moved."""
        with saving(self.root, "change"):
            (self.root / TRASH / path.parent.relative_to(self.root)).mkdir(parents=True, exist_ok=True)
            if self.points_mode:
                self._remove_csv_row(split, path.name)
            if path.exists():
                _move_to_trash(self.root, path)

    def _remove_csv_row(self, split: str, file_name: str) -> None:
        trash_csv = self.root / TRASH / f"{split + '_' if split else ''}removed_{LABELS_CSV}"
        move_rows(self.labels_csv(split), file_name, trash_csv, self.columns())

    # --- events -----------------------------------------------------------------------------
    def on_key(self, key: int, frame: np.ndarray, now: float) -> bool:
        """Handle one key code (from cv2.waitKeyEx; -1 for none). Returns False to quit."""
        if key == -1:
            return True
        if key in KEYS_QUIT:
            return False
        if self.points_mode:
            if key == KEY_ESC:
                if self.frozen is None:
                    return False
                self.discard()
            elif key in KEYS_ENTER:
                self.confirm(now)
            elif key in KEYS_BACKSPACE:
                self.remove_last_point()
            elif key in (KEY_SPACE, ord("f")):
                self.freeze(frame)
            elif key == ord("u"):
                self.undo()
            return True
        if key == KEY_ESC:
            return False
        if ord("1") <= key <= ord("9"):
            index = key - ord("1")
            if index >= len(self.names):
                keys = f"1..{min(9, len(self.names))}"
                self.message = f"no class {index + 1}: keys {keys} save {', '.join(self.names[:9])}"
                return True
            self.active = index
            self.save_class(frame, index, now)
        elif key == KEY_SPACE:
            self.toggle_auto(now)
        elif key in (ord("s"), *KEYS_ENTER):
            self.save_class(frame, now=now)
        elif key == ord("u"):
            self.undo()
        elif key in KEYS_TAB or key in KEYS_RIGHT:
            self.select(self.active + 1)
        elif key in KEYS_LEFT:
            self.select(self.active - 1)
        return True

    # --- drawing ----------------------------------------------------------------------------
    def render(self, frame: np.ndarray, now: float) -> np.ndarray:
        """The view: the frame (or the frozen one) with names, counts, points and cues."""
        view = (self.frozen if self.frozen is not None else frame).copy()
        s = max(0.5, min(view.shape[:2]) / 480)
        if self.points_mode:
            for i, (x, y) in enumerate(self.pending):
                cv2.circle(view, (int(round(x)), int(round(y))), max(3, int(5 * s)), color_for(i), -1, cv2.LINE_AA)
                put_label(view, self.names[i], (int(x) + 8, int(y) - 8), color_for(i), 0.5 * s)
            total = self.count("")
            state = "frozen: " + (self.message or "") if self.frozen is not None else "click or Space to freeze a frame"
            lines = [f"points {', '.join(self.names)}: {total} saved", state]
        else:
            lines = [
                f"{'>' if i == self.active else ' '} {i + 1 if i < 9 else '-'} {name}: {self.count(name)}"
                for i, name in enumerate(self.names)
            ]
            if self.auto:
                lines.append(f"AUTO {self.options.auto_rate:g}/s -> {self.names[self.active]}")
            if self.message:
                lines.append(self.message)
        for row, text in enumerate(lines):
            color = (80, 200, 60) if (not self.points_mode and row == self.active) else (255, 255, 255)
            put_label(view, text, (int(10 * s), int((26 + row * 24) * s)), color, 0.6 * s)
        legend = (
            "click points in order  Enter save  Backspace last point  Esc discard  u undo  q quit"
            if self.points_mode
            else "1-9 save  Space auto  Tab/arrows class  u undo  q quit"
        )
        width = cv2.getTextSize(legend, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * s, max(1, round(0.9 * s)))[0][0]
        fit = min(0.45 * s, 0.45 * s * (view.shape[1] - 20 * s) / max(width, 1))  # shrink to the frame's width
        put_label(view, legend, (int(10 * s), view.shape[0] - int(10 * s)), (255, 255, 255), fit)
        if self.flash and now < self.flash.until:
            cv2.rectangle(view, (0, 0), (view.shape[1] - 1, view.shape[0] - 1), self.flash.color, max(4, int(12 * s)))
        return view

    def train_hint(self) -> str:
        root, typed = self.root, shell_quote(self.root)
        if self.points_mode:
            return (f"{self.count('')} labelled images in {root}; train on them: edgevision train {typed} "
                    f"--task keypoints --points {','.join(self.names)} --head heatmap --mode finetune "
                    "--weights imagenet (or a local .h5 path)")
        counts = ", ".join(f"{n} {self.count(n)}" for n in self.names)
        return (f"{counts} in {root}; train on it: edgevision train {typed} --head linear (seconds, no TensorFlow), "
                "or --weights imagenet (or a local .h5 path) for the Keras model")


def display_scale(frame_hw: tuple[int, int], max_wh: tuple[int, int] = (1280, 720)) -> float:
    """How much to shrink a frame for the window (never enlarged)."""
    h, w = frame_hw
    return min(1.0, max_wh[0] / w, max_wh[1] / h)


def display_to_source(x: int, y: int, scale: float) -> tuple[float, float]:
    """A click in the (scaled) window -> full-resolution pixel coordinates."""
    return (x + 0.5) / scale - 0.5, (y + 0.5) / scale - 0.5

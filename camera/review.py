"""``edgevision collect --review``: step through a dataset's saved images, delete (to the trash)
or relabel with a key. Works on the same :class:`~.collect.Collector` state as collecting."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..deploy.draw import color_for, put_label
from ..deploy.images import IMAGE_SUFFIXES
from .collect import KEY_ESC, KEY_SPACE, KEYS_DELETE, KEYS_LEFT, KEYS_QUIT, KEYS_RIGHT, TRASH, Collector


def _inside(root: Path, path: Path) -> bool:
    """A regular file whose real path is under ``root``, reached through no symlink."""
    try:
        return path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(root)
    except OSError:
        return False


@dataclass
class Reviewer:
    """Step through saved images of a dataset; delete (to the trash) or relabel with a key."""

    collector: Collector
    items: list[Path] = field(default_factory=list)
    index: int = 0
    stopped_by: str = ""  # "Ctrl-C" or "SIGTERM" when a signal ended the review
    _points: dict[Path, list[tuple[float, float]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        c = self.collector
        if c.points_mode:  # the CSVs are read (and checked) here once, not at every frame drawn
            self._points = {c.folder(s) / r["file"]: [(float(r[f"{n}_x"]), float(r[f"{n}_y"])) for n in c.names]
                            for s in c.splits if c.labels_csv(s).is_file() for r in c._read_rows(c.labels_csv(s))}
            self.items = list(self._points)
        else:
            self.items = sorted(
                (p for s in c.splits for n in c.names if c.folder(s, n).is_dir()
                 for p in c.folder(s, n).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                key=lambda p: (p.parent.name, p.name),
            )
        root = c.root.resolve()
        # Only real files inside the dataset: a symlinked class folder or image (or a CSV row naming
        # '../x') never brings a file from elsewhere into the trash or another class.
        self.items = [p for p in self.items if _inside(root, p)]
        self.index = min(self.index, max(0, len(self.items) - 1))

    def current(self) -> Path | None:
        return self.items[self.index] if self.items else None

    def _split_of(self, path: Path) -> str:
        rel = path.relative_to(self.collector.root).parts
        return rel[0] if rel[0] in ("train", "val") else ""

    def points_of(self, path: Path) -> list[tuple[float, float]]:
        return self._points.get(path, [])

    def delete(self) -> None:
        path = self.current()
        if path is None or not _inside(self.collector.root.resolve(), path):
            return
        c = self.collector
        split = self._split_of(path)
        c.trash(path, split)
        if c.points_mode:
            c.counts[(split, "")] -= 1
        else:
            c.counts[(split, path.parent.name)] -= 1
        c.message = f"moved {path.name} to {TRASH}/"
        self.refresh()

    def relabel(self, index: int) -> None:
        c = self.collector
        path = self.current()
        if path is None or c.points_mode:
            return
        if index >= len(c.names):
            c.message = f"no class {index + 1}"
            return
        new_label, old_label = c.names[index], path.parent.name
        if new_label == old_label:
            return
        split = self._split_of(path)
        target = c.folder(split, new_label)
        target.mkdir(parents=True, exist_ok=True)
        dest = target / path.name
        if dest.exists():
            dest = target / f"{path.stem}-{uuid.uuid4().hex[:6]}{path.suffix}"
        shutil.move(str(path), str(dest))
        c.counts[(split, old_label)] -= 1
        c.counts[(split, new_label)] = c.counts.get((split, new_label), 0) + 1
        c.message = f"{path.name}: {old_label} -> {new_label}"
        self.refresh()

    def on_key(self, key: int) -> bool:
        if key == -1:
            return True
        if key in KEYS_QUIT or key == KEY_ESC:
            return False
        if key in KEYS_RIGHT or key in (ord("n"), KEY_SPACE):
            self.index = min(self.index + 1, max(0, len(self.items) - 1))
        elif key in KEYS_LEFT or key == ord("p"):
            self.index = max(self.index - 1, 0)
        elif key in KEYS_DELETE or key == ord("x"):
            self.delete()
        elif ord("1") <= key <= ord("9"):
            self.relabel(key - ord("1"))
        return True

    def render(self) -> np.ndarray | None:
        path = self.current()
        if path is None:
            return None
        image = cv2.imread(str(path))
        if image is None:
            image = np.zeros((240, 320, 3), np.uint8)
        s = max(0.5, min(image.shape[:2]) / 480)
        c = self.collector
        if c.points_mode:
            for i, (x, y) in enumerate(self.points_of(path)):
                cv2.circle(image, (int(round(x)), int(round(y))), max(3, int(5 * s)), color_for(i), -1, cv2.LINE_AA)
                put_label(image, c.names[i], (int(x) + 8, int(y) - 8), color_for(i), 0.5 * s)
        label = "" if c.points_mode else f"  {path.parent.name}"
        put_label(image, f"{self.index + 1}/{len(self.items)}{label}  {path.name}", (int(10 * s), int(26 * s)),
                  (255, 255, 255), 0.55 * s)
        keys = "<- -> step   d delete" + ("" if c.points_mode else "   1..9 relabel") + "   q quit"
        put_label(image, keys, (int(10 * s), image.shape[0] - int(10 * s)), (255, 255, 255), 0.5 * s)
        if c.message:
            put_label(image, c.message, (int(10 * s), int(52 * s)), (80, 200, 60), 0.55 * s)
        return image

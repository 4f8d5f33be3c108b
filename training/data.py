"""Find and read a classification dataset: DATA/<label>/ or DATA/{train,val}/<label>/. No TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..deploy.errors import UserError
from ..deploy.images import IMAGE_SUFFIXES, read_image
from ..deploy.ops import fit_to_input, to_model_color


@dataclass(frozen=True)
class Split:
    paths: tuple[Path, ...]
    labels: np.ndarray  # (n,) int64 class ids


@dataclass(frozen=True)
class ClassDataset:
    classes: tuple[str, ...]
    train: Split
    val: Split
    split_given: bool  # True when DATA had train/ and val/ folders


def _class_folders(root: Path) -> dict[str, list[Path]]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    return {
        f.name: sorted(p for p in f.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for f in folders
    }


def _check_classes(by_class: dict[str, list[Path]], where: Path) -> None:
    if not by_class:
        raise UserError(f"{where} has no class folders: put images in {where}/<label>/")
    empty = [name for name, files in by_class.items() if not files]
    if empty:
        raise UserError(f"class folder {where / empty[0]} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if len(by_class) < 2:
        raise UserError(f"{where} has only one class ({next(iter(by_class))}): a classifier needs two or more")


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): each class contributes round(n * fraction) to val, at least one."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        if len(idx) < 2:
            raise UserError(f"class {cls} has only {len(idx)} image; a train/val split needs two or more")
        n_val = min(len(idx) - 1, max(1, round(len(idx) * val_fraction)))
        val_idx.extend(idx[:n_val])
        train_idx.extend(idx[n_val:])
    return np.sort(np.asarray(train_idx)), np.sort(np.asarray(val_idx))


def find_dataset(data: str | Path, val_split: float = 0.2, seed: int = 0) -> ClassDataset:
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}")
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, val = _class_folders(root / "train"), _class_folders(root / "val")
        _check_classes(train, root / "train")
        _check_classes(val, root / "val")
        if set(train) != set(val):
            raise UserError(f"train/ and val/ name different classes: {sorted(train)} vs {sorted(val)}")
        classes = tuple(sorted(train))

        def split(by_class: dict[str, list[Path]]) -> Split:
            pairs = [(p, i) for i, c in enumerate(classes) for p in by_class[c]]
            return Split(tuple(p for p, _ in pairs), np.array([i for _, i in pairs], dtype=np.int64))

        return ClassDataset(classes, split(train), split(val), True)
    by_class = _class_folders(root)
    _check_classes(by_class, root)
    few = [name for name, files in by_class.items() if len(files) < 2]
    if few:
        raise UserError(f"{root / few[0]} has only one image: a train/val split needs two or more per class")
    classes = tuple(sorted(by_class))
    paths = [p for c in classes for p in by_class[c]]
    labels = np.array([i for i, c in enumerate(classes) for _ in by_class[c]], dtype=np.int64)
    train_idx, val_idx = stratified_split(labels, val_split, seed)
    return ClassDataset(
        classes,
        Split(tuple(paths[i] for i in train_idx), labels[train_idx]),
        Split(tuple(paths[i] for i in val_idx), labels[val_idx]),
        False,
    )


def with_extra(dataset: ClassDataset, extras: list[ClassDataset], names: list[str]) -> ClassDataset:
    """One dataset from several with the same class names (e.g. sign-language hands plus webcam crops)."""
    for extra, name in zip(extras, names):
        if extra.classes != dataset.classes:
            raise UserError(f"extra data {name} has classes {', '.join(extra.classes)}; "
                            f"the main data has {', '.join(dataset.classes)}")

    def join(parts: list[Split]) -> Split:
        return Split(tuple(p for s in parts for p in s.paths), np.concatenate([s.labels for s in parts]))

    every = [dataset, *extras]
    return ClassDataset(dataset.classes, join([d.train for d in every]), join([d.val for d in every]),
                        all(d.split_given for d in every))


def decode_for_training(path: Path, size: int) -> np.ndarray | None:
    """One image file as the model sees it: decoded, RGB, stretched to (size, size) as the runner
    does -> (size, size, 3) uint8; None when it cannot be read. The tf.data pipeline (training/stream.py)
    and :func:`load_images` both read through here, so they give the same pixels."""
    bgr = read_image(path)
    if bgr is None:
        return None
    rgb, _ = fit_to_input(to_model_color(bgr, "RGB"), (size, size), "stretch")
    return rgb


def load_images(split: Split, size: int) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """A whole split in memory -> (n, size, size, 3) uint8, labels, skipped. For small folders and
    checks; training streams its images (training/stream.py) and never holds them all."""
    images, labels, skipped = [], [], []
    for path, label in zip(split.paths, split.labels):
        rgb = decode_for_training(path, size)
        if rgb is None:
            skipped.append(path)
            continue
        images.append(rgb)
        labels.append(label)
    if not images:
        raise UserError(f"none of the {len(split.paths)} images could be read")
    return np.stack(images), np.asarray(labels, dtype=np.int64), skipped

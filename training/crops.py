"""``edgevision crops``: a box dataset -> a classification dataset of the boxes' square crops.

This is how the finger counter learns hands as the detector hands them over: the crops are cut
exactly as ``run --then`` cuts them (deploy.chain: square, with a margin), and training crops
get extra copies with a jittered margin and centre, because a detector's boxes are never exactly
the labelled ones. The label of a crop comes from its box's name through a regular expression
(``^(\\d)-hand$``: '3-hand' -> '3') or from the image's folder. No TensorFlow here.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from ..deploy.boxdata import read_box_folder
from ..deploy.errors import UserError
from ..deploy.images import read_image
from ..deploy.tasks.chain import DEFAULT_MARGIN, crop, square_crop_box

JITTER_MARGIN = (0.0, 0.35)  # margins drawn for the jittered training copies
JITTER_SHIFT = 0.1  # centre shift, a share of the box's longer side


def crop_label(name: str, folder: str, pattern: re.Pattern | None) -> str | None:
    if pattern is None:
        return folder
    m = pattern.fullmatch(name)
    return (m.group(1) if m.groups() else m.group(0)) if m else None


def jittered(box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = float((box[2:] - box[:2]).max())
    moved = box + np.tile(rng.uniform(-JITTER_SHIFT, JITTER_SHIFT, 2) * side, 2)
    return square_crop_box(moved, rng.uniform(*JITTER_MARGIN))[0]


def _write_source(root: Path, out: Path, label_regex: str | None, margin: float, jitter: int, seed: int = 0) -> None:
    """OUT/SOURCE.md: where the crops came from, with the source's repository and licence lines
    (model cards read them from here)."""
    label_text = f"box name '{label_regex}'" if label_regex else "folder"
    lines = [f"# Crops of the boxes in {root}", "",
             f"- Made by: edgevision crops (margin {margin}, {jitter} jittered copies per training box, "
             f"label from {label_text})",
             f"- Command: edgevision crops {root} {out}"
             + (f" --label-regex '{label_regex}'" if label_regex else " --label-from folder")
             + f" --margin {margin} --jitter {jitter} --seed {seed}"]
    source = root / "SOURCE.md"
    if source.is_file():
        lines += [ln for ln in source.read_text(errors="replace").splitlines()
                  if re.match(r"\s*-?\s*(Source repo|License):", ln)]
    (out / "SOURCE.md").write_text("\n".join(lines) + "\n")


def write_crops(data: Path, out: Path, label_regex: str | None, margin: float = DEFAULT_MARGIN, jitter: int = 4,
                size: int = 224, seed: int = 0, log=print, val_split: float = 0.2) -> dict:
    """Write ``out/{train,val}/<label>/<image>_<box>[_j<k>].jpg``; returns counts per split and label.
    Without train/ and val/ in ``data``, a seeded ``val_split`` of the images goes to val/ (by image,
    so no jittered copy of a validation box can land in train/)."""
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty: choose a new folder (nothing is overwritten)")
    try:
        pattern = re.compile(label_regex) if label_regex else None
    except re.error as exc:
        raise UserError(f"--label-regex is not a regular expression: {exc}") from exc
    root = Path(data)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}")
    rng = np.random.default_rng(seed)
    if (root / "train").is_dir() and (root / "val").is_dir():
        splits = {split: read_box_folder(root / split, ("object",), ("*:object",))[0] for split in ("train", "val")}
    else:
        every = read_box_folder(root, ("object",), ("*:object",))[0]
        is_val = np.zeros(len(every), bool)
        is_val[rng.permutation(len(every))[: max(1, round(len(every) * val_split))]] = True
        splits = {"train": [s for s, v in zip(every, is_val) if not v], "val": [s for s, v in zip(every, is_val) if v]}
    counts: dict[str, dict[str, int]] = {}
    skipped = 0
    for split, samples in splits.items():
        copies = jitter if split != "val" else 0
        for s in samples:
            image = read_image(s.path)
            if image is None:
                raise UserError(f"cannot read {s.path}")
            for i, (box, name) in enumerate(zip(s.xyxy, s.names)):
                label = crop_label(name, s.path.parent.name, pattern)
                if label is None:
                    skipped += 1
                    continue
                folder = out / split / label
                folder.mkdir(parents=True, exist_ok=True)
                boxes = [square_crop_box(box, margin)[0]] + [jittered(box, rng) for _ in range(copies)]
                for k, square in enumerate(boxes):
                    patch = cv2.resize(crop(image, square), (size, size), interpolation=cv2.INTER_AREA)
                    suffix = f"_j{k}" if k else ""
                    cv2.imwrite(str(folder / f"{s.path.stem}_{i}{suffix}.jpg"), patch, [cv2.IMWRITE_JPEG_QUALITY, 95])
                    counts.setdefault(split, {}).setdefault(label, 0)
                    counts[split][label] += 1
    if not counts:
        raise UserError(f"no box name matched --label-regex {label_regex!r}" if pattern else f"no boxes in {data}")
    _write_source(root, out, label_regex, margin, jitter, seed)
    for split, by_label in counts.items():
        log(f"{split}: " + ", ".join(f"{k} {v}" for k, v in sorted(by_label.items())) + " crops")
    if skipped:
        log(f"{skipped} boxes whose name did not match --label-regex were left out")
    return counts

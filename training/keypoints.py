"""Keypoint data, augmentation and metrics: named (x, y) points per image. No TensorFlow here.

Layout (what ``edgevision collect --points`` writes, and the shared nose set):
``DATA/images/*.jpg`` + ``DATA/labels.csv`` with ``file,<name>_x,<name>_y,...`` in pixels, or the
same under ``DATA/train/`` and ``DATA/val/``. A ``landmarks68.csv`` beside it (iBUG 68-point
layout, columns ``file,x0,y0,...,x67,y67``) gives the outer eye corners for the metric, and the
points ``left_eye``/``right_eye`` (centres of points 42-47 / 36-41, the subject's left / right)
and ``ibug0``..``ibug67`` (single points, e.g. ``ibug30`` the nose tip) when ``labels.csv`` lacks them.

Metric: the normalised mean error (NME) of a point is |predicted - true| divided by the distance
between the outer eye corners (iBUG points 36 and 45) where landmarks68.csv has them, else by
the image diagonal (say which in the report).
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..deploy.errors import UserError
from ..deploy.images import read_image
from ..deploy.ops import fit_to_input, to_model_color
from ..deploy.spec import TaskSpec
from .samples import PLACEMENT, Source, model_input, placement_row

IBUG_EYES = {"right_eye": range(36, 42), "left_eye": range(42, 48)}  # the subject's right eye is on the image left
IBUG_OUTER_CORNERS = (36, 45)


@dataclass(frozen=True)
class PointSet:
    paths: tuple[Path, ...]
    points: np.ndarray  # (n, k, 2) float32, source pixels
    norm: np.ndarray  # (n,) float32: the distance errors are divided by
    norm_kind: str  # "inter-ocular" or "diagonal"


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:  # a BOM (Excel) is not part of the first name
        return list(csv.DictReader(f))


def _split_dirs(root: Path) -> tuple[Path, Path | None]:
    if (root / "train" / "labels.csv").is_file() and (root / "val" / "labels.csv").is_file():
        return root / "train", root / "val"
    if (root / "labels.csv").is_file():
        return root, None
    raise UserError(
        f"{root} has no labels.csv (nor train/labels.csv and val/labels.csv): collect points with "
        "'edgevision collect DATA --points nose'"
    )


def read_points(folder: Path, names: tuple[str, ...], diagonals: bool = True) -> PointSet:
    """Images and named points of one folder (``images/`` + ``labels.csv`` [+ ``landmarks68.csv``]).
    Without eye corners the norm is each image's diagonal: read from the files, or with ``diagonals``
    False left NaN (a training stream's scan measures them)."""
    rows = _read_csv(folder / "labels.csv")
    landmarks = {}
    if (folder / "landmarks68.csv").is_file():
        landmarks = {r["file"]: r for r in _read_csv(folder / "landmarks68.csv")}
    paths, points, norms = [], [], []
    missing_images = 0
    for row in rows:
        path = folder / "images" / row["file"]
        if not path.is_file():
            missing_images += 1
            continue
        pts = []
        for name in names:
            if f"{name}_x" in row and f"{name}_y" in row:
                pts.append((float(row[f"{name}_x"]), float(row[f"{name}_y"])))
            elif (name in IBUG_EYES or re.fullmatch(r"ibug\d+", name)) and row["file"] in landmarks:
                lm = landmarks[row["file"]]
                idx = IBUG_EYES.get(name) or [int(name[4:])]
                if max(idx) > 67:
                    raise UserError(f"{name}: the iBUG layout numbers its points 0..67")
                pts.append((float(np.mean([float(lm[f"x{i}"]) for i in idx])),
                            float(np.mean([float(lm[f"y{i}"]) for i in idx]))))
            else:
                raise UserError(f"{folder / 'labels.csv'} has no {name}_x/{name}_y for {row['file']}")
        if row["file"] in landmarks:
            lm = landmarks[row["file"]]
            a, b = IBUG_OUTER_CORNERS
            norms.append(math.dist((float(lm[f"x{a}"]), float(lm[f"y{a}"])), (float(lm[f"x{b}"]), float(lm[f"y{b}"]))))
        else:
            norms.append(float("nan"))
        paths.append(path)
        points.append(pts)
    if not paths:
        raise UserError(f"no labelled images in {folder} ({missing_images} rows name missing files)")
    norm = np.asarray(norms, dtype=np.float32)
    kind = "inter-ocular"
    if np.isnan(norm).any():  # no eye corners for some: fall back to the diagonal for all, consistently
        kind = "diagonal"
        norm = np.asarray([_diagonal(p) if diagonals else float("nan") for p in paths], dtype=np.float32)
    return PointSet(tuple(paths), np.asarray(points, dtype=np.float32), norm, kind)


def _diagonal(path: Path) -> float:
    """The image's diagonal in pixels (NaN when it cannot be read: training skips it)."""
    image = read_image(path)
    return float("nan") if image is None else math.hypot(*image.shape[:2])


def find_point_dataset(
    data: str | Path, names: tuple[str, ...], val_split: float, seed: int, diagonals: bool = True
) -> tuple[PointSet, PointSet]:
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}")
    train_dir, val_dir = _split_dirs(root)
    train = read_points(train_dir, names, diagonals)
    if val_dir is not None:
        return train, read_points(val_dir, names, diagonals)
    if len(train.paths) < 5:
        raise UserError(f"{root} has {len(train.paths)} labelled images: collect at least 5")
    order = np.random.default_rng(seed).permutation(len(train.paths))
    is_val = np.zeros(len(order), dtype=bool)
    is_val[order[: max(1, round(len(order) * val_split))]] = True
    return subset(train, ~is_val), subset(train, is_val)


def flip_partner(names: tuple[str, ...]) -> np.ndarray:
    """Index of each point after a left-right flip: 'left_eye' <-> 'right_eye'; others stay."""
    index = {n: i for i, n in enumerate(names)}
    partner = np.arange(len(names))
    for i, name in enumerate(names):
        for a, b in (("left", "right"), ("right", "left")):
            if a in name and name.replace(a, b) in index:
                partner[i] = index[name.replace(a, b)]
    return partner


def subset(points: PointSet, keep: np.ndarray) -> PointSet:
    return PointSet(tuple(p for p, k in zip(points.paths, keep) if k), points.points[keep], points.norm[keep],
                    points.norm_kind)


@dataclass(frozen=True)
class Resized:
    images: np.ndarray  # (n, s, s, 3) uint8 RGB, stretched as the runner does
    points: np.ndarray  # (n, k, 2) in those input pixels
    scale_xy: np.ndarray  # (n, 2) input pixels per source pixel
    kept: PointSet  # the labels of the readable images, aligned with the rows above
    skipped: list[Path]


def point_source(points: PointSet, spec: TaskSpec, name: str) -> Source:
    """The stream's samples: the image as the runner feeds it (``spec``: RGB, stretched), its
    points (k, 2) in those input pixels, and (info) where the source went (samples.PLACEMENT)."""

    def load(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        found = model_input(points.paths[i], spec)
        if found is None:
            return None
        image, placement = found
        return image, points.points[i] * np.float32(placement.scale_xy), placement_row(placement)

    (h, w), k = spec.input_hw, points.points.shape[1]
    stamps = tuple(json.dumps(p.tolist()) for p in points.points)
    return Source(name, points.paths, stamps, w, load,
                  (("uint8", (h, w, 3)), ("float32", (k, 2)), PLACEMENT), info=1)


def load_resized(points: PointSet, size: int) -> Resized:
    """Every image in memory (for small sets and checks; training streams them: point_source)."""
    images, pts, scales, keep = [], [], [], []
    for path, p in zip(points.paths, points.points):
        bgr = read_image(path)
        keep.append(bgr is not None)
        if bgr is None:
            continue
        rgb, placement = fit_to_input(to_model_color(bgr, "RGB"), (size, size), "stretch")
        images.append(rgb)
        pts.append(p * np.float32(placement.scale_xy))
        scales.append(placement.scale_xy)
    keep = np.asarray(keep)
    if not keep.any():
        raise UserError(f"none of the {len(points.paths)} labelled images could be read")
    skipped = [p for p, k in zip(points.paths, keep) if not k]
    return Resized(np.stack(images), np.asarray(pts, np.float32), np.asarray(scales, np.float32),
                   subset(points, keep), skipped)


def random_affine(size: int, rng: np.random.Generator, rotation_deg: float, zoom: float, translate: float,
                  flip: bool) -> tuple[np.ndarray, bool]:
    """A 2x3 matrix for a size x size image: rotation and scale about the centre, a shift, maybe a mirror."""
    angle = rng.uniform(-rotation_deg, rotation_deg)
    scale = rng.uniform(1 - zoom, 1 + zoom)
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    m[:, 2] += rng.uniform(-translate, translate, size=2) * size
    mirrored = bool(flip and rng.random() < 0.5)
    if mirrored:  # x -> size - x after the rest
        m = np.array([[-1, 0, size], [0, 1, 0]], dtype=np.float64) @ np.vstack([m, [0, 0, 1]])
    return m.astype(np.float32), mirrored


def augment_sample(image: np.ndarray, points: np.ndarray, rng: np.random.Generator, config, partner: np.ndarray,
                   tries: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One augmented copy: the same affine map moves the image and its points (k, 2); a mirror swaps
    left/right names. Maps that push a point out of the frame are drawn again."""
    size = image.shape[0]
    for _ in range(tries):
        m, mirrored = random_affine(size, rng, config.rotation_deg, config.zoom, config.translate, config.hflip)
        moved = points @ m[:, :2].T + m[:, 2]  # (k, 2) -> (k, 2)
        if ((moved >= 0) & (moved <= size - 1)).all():
            break
    else:
        return image, points
    # Replicate, not reflect: a reflected border would show unlabelled copies of the points.
    out = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if mirrored:
        moved = moved[partner]
    return color_jitter(out, rng, config.color, config.grayscale,
                        getattr(config, "lowres", 0.0)), moved.astype(np.float32)


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float, grey_p: float,
                 lowres_p: float = 0.0) -> np.ndarray:
    """Brightness, contrast and saturation jitter; a grey copy with probability ``grey_p``; with
    probability ``lowres_p`` the image shrunk to 24..64 px on its longer side and scaled back up
    (a small, blurry face or hand from a far or cheap camera)."""
    if lowres_p > 0 and rng.random() < lowres_p:
        h, w = image.shape[:2]
        scale = int(rng.integers(24, 65)) / max(h, w)
        if scale < 1:
            small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
            image = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    x = image.astype(np.float32)
    if strength > 0:
        x = x + rng.uniform(-strength, strength) * 127
        mean = x.mean()
        x = (x - mean) * rng.uniform(1 - strength, 1 + strength) + mean
        grey = x.mean(axis=2, keepdims=True)
        x = (x - grey) * rng.uniform(1 - 2 * strength, 1 + 2 * strength) + grey
    if grey_p > 0 and rng.random() < grey_p:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(x, 0, 255).astype(np.uint8)

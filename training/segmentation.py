"""Segmentation data, augmentation and metrics. No TensorFlow here.

Layout: ``DATA/images/*.jpg`` with ``DATA/masks/<stem>.png`` (one class id per pixel, 0 is
background), or YOLO polygon labels ``DATA/labels/<stem>.txt`` (``class x1 y1 x2 y2 ...``, normalised
to the image), or a COCO file ``DATA/annotations.json`` (polygons or RLE; categories matched to the
class names by name), which are rasterised; the same under ``DATA/train/`` and ``DATA/val/`` when split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..deploy.errors import UserError
from ..deploy.images import IMAGE_SUFFIXES, read_image
from ..deploy.ops import fit_to_input, to_model_color
from ..deploy.spec import TaskSpec
from .samples import PLACEMENT, Source, model_input, placement_row


def yolo_polygons_to_mask(text: str, hw: tuple[int, int], class_map: dict[int, int]) -> np.ndarray:
    """YOLO-seg lines -> a uint8 mask (h, w); ``class_map`` maps YOLO class ids to mask ids (others ignored)."""
    h, w = hw
    mask = np.zeros((h, w), np.uint8)
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 7 or int(float(parts[0])) not in class_map:  # a polygon needs 3 points
            continue
        xy = np.asarray(parts[1:], dtype=np.float32).reshape(-1, 2) * np.float32((w, h))  # (2k,) -> (k, 2)
        cv2.fillPoly(mask, [np.round(xy).astype(np.int32)], int(class_map[int(float(parts[0]))]))
    return mask


COCO_FILES = ("annotations.json", "_annotations.coco.json")  # ours, and Roboflow's export name


def rle_decode(counts, hw: tuple[int, int]) -> np.ndarray:
    """COCO run-length encoding (a list of counts, or the compressed string) -> (h, w) uint8 0/1.
    Runs alternate 0 and 1, starting with 0, in column-major order."""
    if isinstance(counts, str):  # pycocotools' compressed form: 5-bit groups, 6-bit chars, deltas
        values, i = [], 0
        while i < len(counts):
            x, k, more = 0, 0, True
            while more:
                c = ord(counts[i]) - 48
                x |= (c & 0x1F) << (5 * k)
                more = bool(c & 0x20)
                i, k = i + 1, k + 1
                if not more and (c & 0x10):
                    x |= -1 << (5 * k)
            if len(values) > 2:
                x += values[-2]
            values.append(x)
        counts = values
    h, w = hw
    flat = np.zeros(h * w, np.uint8)
    pos = 0
    for j, n in enumerate(counts):
        if j % 2:
            flat[pos : pos + n] = 1
        pos += n
    return flat.reshape(w, h).T.copy()


@dataclass(frozen=True)
class CocoImage:
    """One image's shapes in a COCO instances file: (class id, polygons or RLE) in file order."""

    hw: tuple[int, int]
    shapes: tuple[tuple[int, object], ...]

    def mask(self) -> np.ndarray:
        mask = np.zeros(self.hw, np.uint8)
        for cid, seg in self.shapes:
            if isinstance(seg, list):  # polygons [x1, y1, x2, y2, ...] in pixels
                polys = [np.round(np.asarray(p, np.float32).reshape(-1, 2)).astype(np.int32) for p in seg
                         if len(p) >= 6]
                if polys:
                    cv2.fillPoly(mask, polys, cid)
            elif isinstance(seg, dict):
                mask[rle_decode(seg["counts"], tuple(seg["size"])) > 0] = cid
        return mask


def coco_shapes(path: Path, class_names: tuple[str, ...]) -> dict[str, CocoImage]:
    """file name -> its shapes, for a COCO instances file; categories named like ``class_names[1:]``
    become ids 1, 2, ... (others are left as background). Masks are drawn when asked for."""
    import json

    try:
        coco = json.loads(path.read_text())
        by_name = {c["name"]: c["id"] for c in coco["categories"]}
        images = {im["id"]: im for im in coco["images"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a COCO instances file: {exc}") from exc
    ids = {by_name[n]: i for i, n in enumerate(class_names) if i > 0 and n in by_name}
    if not ids:
        raise UserError(f"{path} has none of the classes {', '.join(class_names[1:])} "
                        f"(its categories: {', '.join(sorted(by_name)[:10])})")
    shapes: dict[int, list] = {im_id: [] for im_id in images}
    for ann in coco.get("annotations", []):
        cid = ids.get(ann.get("category_id"))
        if cid is not None and ann.get("image_id") in images:
            shapes[ann["image_id"]].append((cid, ann.get("segmentation")))
    return {Path(im["file_name"]).name: CocoImage((im["height"], im["width"]), tuple(shapes[im_id]))
            for im_id, im in images.items()}


@dataclass(frozen=True)
class MaskRef:
    """Where one image's mask comes from: a PNG of class ids (``path``), YOLO polygons (``path``,
    drawn at the image's size with ``yolo`` mapping YOLO ids to mask ids) or a COCO file's shapes."""

    kind: str  # "png", "yolo" or "coco"
    path: Path  # the PNG, the YOLO .txt or the COCO .json
    image: Path
    yolo: dict | None = None
    coco: CocoImage | None = None

    def load(self, hw: tuple[int, int] | None = None) -> np.ndarray:
        """The mask (h, w) uint8 at the image's size (``hw``, or read from the image for YOLO)."""
        if self.kind == "png":
            mask = read_image(self.path, cv2.IMREAD_UNCHANGED)
            if mask is None or mask.ndim != 2:
                raise UserError(f"{self.path} is not a single-channel mask of class ids")
            return mask.astype(np.uint8)
        if self.kind == "coco":
            return self.coco.mask()
        if hw is None:
            image = read_image(self.image)
            if image is None:
                raise UserError(f"cannot read {self.image} (its YOLO polygons are drawn at its size)")
            hw = image.shape[:2]
        return yolo_polygons_to_mask(self.path.read_text(), hw, self.yolo)

    def stamp(self) -> str:
        """The label's file and state, for cache names."""
        try:
            stat = self.path.stat()
            state = f"{stat.st_size} {stat.st_mtime_ns}"
        except OSError:
            state = "missing"
        return f"{self.kind} {self.path.resolve()} {state}" + (f" {self.image.name}" if self.kind == "coco" else "")


class Masks(Sequence):
    """The masks of a set, drawn or read one at a time when asked for (never all held)."""

    def __init__(self, refs: tuple[MaskRef, ...]) -> None:
        self.refs = refs

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.refs[i].load()

    def take(self, indices) -> Masks:
        return Masks(tuple(self.refs[i] for i in indices))


@dataclass(frozen=True)
class SegSet:
    images: tuple[Path, ...]
    masks: Masks  # (h, w) uint8 class ids, source size, each read when asked for


def read_seg_folder(folder: Path, yolo_classes: dict[int, int], class_names: tuple[str, ...] = ()) -> SegSet:
    image_dir = folder / "images"
    if not image_dir.is_dir():
        raise UserError(f"{folder} has no images/ folder (with masks/, labels/ or annotations.json beside it)")
    coco_file = next((folder / n for n in COCO_FILES if (folder / n).is_file()), None)
    coco = coco_shapes(coco_file, class_names) if coco_file is not None and class_names else {}
    images, refs = [], []
    for path in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        png, txt = folder / "masks" / f"{path.stem}.png", folder / "labels" / f"{path.stem}.txt"
        if png.is_file():
            ref = MaskRef("png", png, path)
        elif txt.is_file():
            ref = MaskRef("yolo", txt, path, yolo=yolo_classes)
        elif path.name in coco:
            ref = MaskRef("coco", coco_file, path, coco=coco[path.name])
        else:
            continue  # an image without a label says nothing
        images.append(path)
        refs.append(ref)
    if not images:
        raise UserError(f"no labelled images in {folder} (images/ with masks/*.png, labels/*.txt or annotations.json)")
    return SegSet(tuple(images), Masks(tuple(refs)))


def find_seg_dataset(data: str | Path, yolo_classes: dict[int, int], val_split: float, seed: int,
                     class_names: tuple[str, ...] = ()) -> tuple[SegSet, SegSet]:
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}")
    if (root / "train").is_dir() and (root / "val").is_dir():
        return (read_seg_folder(root / "train", yolo_classes, class_names),
                read_seg_folder(root / "val", yolo_classes, class_names))
    every = read_seg_folder(root, yolo_classes, class_names)
    order = np.random.default_rng(seed).permutation(len(every.images))
    n_val = max(1, round(len(order) * val_split))

    def take(idx) -> SegSet:
        return SegSet(tuple(every.images[i] for i in idx), every.masks.take(idx))

    return take(sorted(order[n_val:])), take(sorted(order[:n_val]))


def seg_source(data: SegSet, spec: TaskSpec, name: str) -> Source:
    """The stream's samples: the image as the runner feeds it (``spec``: RGB, stretched), its mask
    stretched alike (nearest), and (info) the source mask's foreground share and the placement."""

    def load(i: int) -> tuple | None:
        found = model_input(data.images[i], spec)
        if found is None:
            return None
        image, placement = found
        mask = data.masks.refs[i].load(placement.source_hw)
        resized = cv2.resize(mask, spec.input_hw[::-1], interpolation=cv2.INTER_NEAREST)
        return image, resized, np.float32((mask > 0).mean()), placement_row(placement)

    (h, w), refs = spec.input_hw, data.masks.refs
    yolo = sorted(refs[0].yolo.items()) if refs and refs[0].yolo else []
    return Source(name, data.images, tuple(r.stamp() for r in refs), w, load,
                  (("uint8", (h, w, 3)), ("uint8", (h, w)), ("float32", ()), PLACEMENT), info=2,
                  variant=f"classes {list(spec.labels)} yolo {yolo}")


def load_resized(data: SegSet, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, s, s, 3) RGB uint8 and masks (n, s, s) uint8, stretched as the runner does: every
    image in memory (for small sets and checks; training streams them: seg_source)."""
    images, masks = [], []
    for path, mask in zip(data.images, data.masks):
        bgr = read_image(path)
        if bgr is None:
            raise UserError(f"cannot read {path}")
        images.append(fit_to_input(to_model_color(bgr, "RGB"), (size, size), "stretch")[0])
        masks.append(cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST))
    return np.stack(images), np.stack(masks)


def augment_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, config
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One affine map for image (bilinear) and mask (nearest), then colour on the image only."""
    from .keypoints import color_jitter, random_affine

    size = image.shape[0]
    m, _ = random_affine(size, rng, config.rotation_deg, config.zoom, config.translate, config.hflip)
    out = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out_mask = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    return color_jitter(out, rng, config.color, config.grayscale,
                        getattr(config, "lowres", 0.0)), out_mask


def object_crop(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, size: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """A size x size view around one foreground object (a connected region of the mask), its box
    widened 1.1 to 2 times and made square, so that portraits and half-body shots are in training
    even when the photos are wide scenes. The whole photo, resized, when the mask is empty."""
    n, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= 64]
    h, w = mask.shape
    if not big:
        box = np.float32([0, 0, w, h])
    else:
        i = big[int(rng.integers(len(big)))]
        x, y, bw, bh = (float(v) for v in stats[i, :4])
        cx, cy = x + bw / 2, y + bh / 2
        if rng.random() < 0.5:  # a head-and-shoulders view: the top of a tall region
            cy, bh = y + min(bh, 1.2 * bw) / 2, min(bh, 1.2 * bw)
        side = max(bw, bh) * rng.uniform(1.1, 2.0)
        cx += rng.uniform(-0.15, 0.15) * side
        cy += rng.uniform(-0.15, 0.15) * side
        box = np.float32([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
    src = np.float32([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]]])
    dst = np.float32([[0, 0], [size, 0], [0, size]])
    m = cv2.getAffineTransform(src, dst)
    out = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA if box[2] - box[0] > size else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    out_mask = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    return out, out_mask

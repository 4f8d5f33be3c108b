"""Detection data, box augmentation, training targets and the AP metric. No TensorFlow here.

Layouts read (under ``DATA/`` or ``DATA/train/`` + ``DATA/val/``):

- Pascal VOC: every image (in any sub-folder) with a ``<stem>.xml`` beside it, or in an
  ``Annotations/`` folder next to ``JPEGImages/``; ``<object><name>`` is mapped to a class (see
  ``rename``), ``<difficult>1`` boxes are ignored by the metric, as in VOC.
- YOLO: ``images/<stem>.jpg`` with ``labels/<stem>.txt`` lines ``class cx cy w h`` normalised to the
  image; class ids index ``classes``. An empty label file is a background image.

Images with no label file at all are skipped (unlabelled is not the same as "nothing here").
"""

from __future__ import annotations

import fnmatch
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..camera.sources import IMAGE_SUFFIXES, read_image
from ..deploy.errors import UserError
from ..deploy.ops import LETTERBOX_FILL, box_iou, fit_to_input

MIN_VISIBLE = 0.4  # a box cut by a crop keeps its clipped part if at least this share of it remains
MIN_SIDE_PX = 2.0  # ... and the clipped box is at least this wide and high (model-input pixels)


@dataclass(frozen=True)
class BoxSample:
    path: Path
    xyxy: np.ndarray  # (n, 4) float32, source pixels
    label: np.ndarray  # (n,) int64 class index
    difficult: np.ndarray  # (n,) bool
    names: tuple[str, ...]  # the annotation's own object names (e.g. '3-hand')


def map_name(name: str, classes: tuple[str, ...], rename: tuple[str, ...]) -> int | None:
    """Class index of an annotation name: an exact class name, else the first ``pattern:class`` rule
    (shell-style pattern, e.g. ``*-hand:hand``) that matches; None when nothing does."""
    if name in classes:
        return classes.index(name)
    for rule in rename:
        pattern, _, target = rule.rpartition(":")
        if fnmatch.fnmatchcase(name, pattern) and target in classes:
            return classes.index(target)
    return None


def read_voc(xml_path: Path, classes: tuple[str, ...], rename: tuple[str, ...]) -> tuple[list, list, list, list, int]:
    """(boxes, labels, difficult, names, unmapped count) of one VOC file; VOC pixels are 1-based."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise UserError(f"{xml_path} is not valid VOC XML: {exc}") from exc
    boxes, labels, difficult, names, unmapped = [], [], [], [], 0
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if box is None:
            continue
        try:
            x0, y0, x1, y1 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError) as exc:
            raise UserError(f"{xml_path}: object {name!r} has a bndbox without 4 numbers") from exc
        label = map_name(name, classes, rename)
        if label is None:
            unmapped += 1
            continue
        boxes.append((x0 - 1, y0 - 1, x1, y1))
        labels.append(label)
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
        names.append(name)
    return boxes, labels, difficult, names, unmapped


def read_yolo_boxes(txt_path: Path, hw: tuple[int, int], classes: tuple[str, ...]) -> tuple[list, list, int]:
    h, w = hw
    boxes, labels, unmapped = [], [], 0
    for n, line in enumerate(txt_path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise UserError(f"{txt_path}:{n}: a YOLO box line is 'class cx cy w h', got {line.strip()!r}")
        cid = int(float(parts[0]))
        if not 0 <= cid < len(classes):
            unmapped += 1
            continue
        cx, cy, bw, bh = (float(v) for v in parts[1:])
        boxes.append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
        labels.append(cid)
    return boxes, labels, unmapped


def _sample(path, boxes, labels, difficult, names) -> BoxSample:
    return BoxSample(path, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
                     np.asarray(difficult, bool), tuple(names))


def sample_to_json(sample: BoxSample) -> str:
    """One line of a run's val.tsv (after the path)."""
    return json.dumps({"xyxy": sample.xyxy.round(2).tolist(), "label": sample.label.tolist(),
                       "difficult": sample.difficult.tolist(), "names": list(sample.names)})


def sample_from_json(text: str, path: Path = Path()) -> BoxSample:
    d = json.loads(text)
    return _sample(path, d["xyxy"], d["label"], d["difficult"], d["names"])


def read_box_folder(folder: Path, classes: tuple[str, ...], rename: tuple[str, ...] = ()
                    ) -> tuple[list[BoxSample], dict]:
    """All labelled images under ``folder`` and a count of what was skipped."""
    samples, stats = [], {"unlabelled_images": 0, "unmapped_boxes": 0}
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        voc = path.with_suffix(".xml")
        if not voc.is_file() and path.parent.name == "JPEGImages":
            voc = path.parent.parent / "Annotations" / f"{path.stem}.xml"
        yolo = path.parent.parent / "labels" / f"{path.stem}.txt" if path.parent.name == "images" else None
        if voc.is_file():
            boxes, labels, difficult, names, unmapped = read_voc(voc, classes, rename)
        elif yolo is not None and yolo.is_file():
            image = read_image(path)
            if image is None:
                raise UserError(f"cannot read {path}")
            boxes, labels, unmapped = read_yolo_boxes(yolo, image.shape[:2], classes)
            difficult, names = [False] * len(boxes), [classes[i] for i in labels]
        else:
            stats["unlabelled_images"] += 1
            continue
        stats["unmapped_boxes"] += unmapped
        samples.append(_sample(path, boxes, labels, difficult, names))
    if not samples:
        raise UserError(f"no labelled images in {folder} (VOC <stem>.xml beside each image, or images/ + labels/*.txt)")
    if not any(len(s.label) for s in samples):
        raise UserError(f"none of the boxes in {folder} name a class of {', '.join(classes)}: "
                        "name the classes, or map box names with rules like '*-hand:hand' "
                        "(train: --det-classes, --det-rename; eval: --rename)")
    return samples, stats


def find_box_dataset(data: str | Path, classes: tuple[str, ...], rename: tuple[str, ...], val_split: float,
                     seed: int) -> tuple[list[BoxSample], list[BoxSample], dict]:
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}")
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, s1 = read_box_folder(root / "train", classes, rename)
        val, s2 = read_box_folder(root / "val", classes, rename)
        return train, val, {k: s1[k] + s2[k] for k in s1}
    every, stats = read_box_folder(root, classes, rename)
    order = np.random.default_rng(seed).permutation(len(every))
    n_val = max(1, round(len(order) * val_split))
    return [every[i] for i in sorted(order[n_val:])], [every[i] for i in sorted(order[:n_val])], stats


# --- augmentation -------------------------------------------------------------------------------


def random_box_matrix(hw: tuple[int, int], size: int, rng: np.random.Generator, zoom: float, translate: float,
                      flip: bool, rotation_deg: float = 0.0, rot90: float = 0.0) -> np.ndarray:
    """Letterbox, then scale by 1 +- zoom (about 10% independently per axis), shift (crop when larger
    than the input, anywhere within ``translate`` otherwise), maybe mirror; then, about the centre,
    a quarter turn with probability ``rot90`` and a small rotation within +-``rotation_deg``."""
    h, w = hw
    base = min(size / h, size / w) * rng.uniform(1 - zoom, 1 + zoom)
    sx, sy = base * rng.uniform(0.9, 1.1), base * rng.uniform(0.9, 1.1)
    tx = (size - w * sx) / 2 + rng.uniform(-1, 1) * max(abs(size - w * sx) / 2, translate * size)
    ty = (size - h * sy) / 2 + rng.uniform(-1, 1) * max(abs(size - h * sy) / 2, translate * size)
    m = np.array([[sx, 0, tx], [0, sy, ty], [0, 0, 1]], np.float64)
    if flip and rng.random() < 0.5:
        m = np.array([[-1, 0, size], [0, 1, 0], [0, 0, 1]], np.float64) @ m
    angle = rng.uniform(-rotation_deg, rotation_deg) if rotation_deg else 0.0
    if rot90 and rng.random() < rot90:
        angle += 90.0 * rng.choice([-1, 1])
    if angle:
        m = np.vstack([cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0), [0, 0, 1]]) @ m
    return m[:2]


def warp_boxes(xyxy: np.ndarray, m: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes under an affine map (the box around the four moved corners: exact for scale, shift,
    mirror and quarter turns, a little loose for other angles), clipped to the input; returns
    (boxes, kept mask): a box stays when at least MIN_VISIBLE of it is inside and the clipped box is
    MIN_SIDE_PX on each side."""
    if len(xyxy) == 0:
        return xyxy.reshape(0, 4), np.zeros(0, bool)
    x0, y0, x1, y1 = (xyxy[:, i] for i in range(4))
    corners = np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x0, y1], 1),
                        np.stack([x1, y1], 1)], axis=1) @ m[:, :2].T + m[:, 2]  # (n, 4 corners, xy)
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    full = np.prod(hi - lo, axis=1)
    clo, chi = np.clip(lo, 0, size), np.clip(hi, 0, size)
    side = chi - clo
    kept = (np.prod(side, axis=1) >= MIN_VISIBLE * np.maximum(full, 1e-9)) & (side >= MIN_SIDE_PX).all(axis=1)
    return np.concatenate([clo, chi], axis=1).astype(np.float32), kept


def augment_boxes(image_rgb: np.ndarray, xyxy: np.ndarray, label: np.ndarray, size: int, rng: np.random.Generator,
                  config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A source image (any size) and its boxes -> one augmented (size, size) input and the boxes
    and labels in it. Colour jitter from the keypoint module (image only)."""
    from .keypoints import color_jitter

    m = random_box_matrix(image_rgb.shape[:2], size, rng, config.zoom, config.translate, config.hflip,
                          getattr(config, "rotation_deg", 0.0), getattr(config, "rot90", 0.0))
    out = cv2.warpAffine(image_rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(LETTERBOX_FILL,) * 3)
    boxes, kept = warp_boxes(xyxy, m, size)
    return color_jitter(out, rng, config.color, config.grayscale), boxes[kept], label[kept]


def mosaic(images: list[np.ndarray], boxes: list[np.ndarray], labels: list[np.ndarray], size: int,
           rng: np.random.Generator, config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four sources, each augmented at half size into one quadrant (objects smaller, in new
    company, as in YOLOv4's mosaic); boxes follow their image."""
    half = size // 2
    out = np.empty((size, size, 3), np.uint8)
    all_boxes, all_labels = [], []
    for k, (image, xyxy, label) in enumerate(zip(images, boxes, labels)):
        tile, b, lab = augment_boxes(image, xyxy, label, half, rng, config)
        y, x = (k // 2) * half, (k % 2) * half
        out[y : y + half, x : x + half] = tile
        all_boxes.append(b + np.float32([x, y, x, y]))
        all_labels.append(lab)
    return out, np.concatenate(all_boxes).reshape(-1, 4), np.concatenate(all_labels)


def letterbox_sample(image_rgb: np.ndarray, xyxy: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """No augmentation: the runtime's own letterbox (ops.fit_to_input), boxes moved with it."""
    out, placement = fit_to_input(image_rgb, (size, size), "letterbox")
    m = np.array([[placement.scale_xy[0], 0, placement.pad_xy[0]], [0, placement.scale_xy[1], placement.pad_xy[1]]])
    return out, warp_boxes(xyxy, m, size)[0]


# --- training targets ---------------------------------------------------------------------------


def grid_centres(size: int, grid: int) -> np.ndarray:
    """(grid*grid, 2) cell centres in input pixels, row-major (the order of the model's anchors)."""
    stride = size / grid
    c = (np.arange(grid, dtype=np.float32) + 0.5) * stride
    xs, ys = np.meshgrid(c, c)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def encode_targets(xyxy: np.ndarray, label: np.ndarray, size: int, grid: int, num_classes: int,
                   radius: float = 1.5) -> np.ndarray:
    """FCOS-style targets per cell, (grid*grid, 6 + classes): l, t, r, b (divided by ``size``),
    centre-ness, positive flag, one-hot class. A cell is positive for a box when its centre lies
    inside the box and within ``radius`` strides of the box centre ("centre sampling"); a cell
    claimed by several boxes takes the smallest. A box narrower than a stride may hold no cell
    centre and then has no positive cell: the grid's limit (16 px of the input at stride 16)."""
    centres = grid_centres(size, grid)
    out = np.zeros((len(centres), 6 + num_classes), np.float32)
    if len(xyxy) == 0:
        return out
    stride = size / grid
    x, y = centres[:, :1], centres[:, 1:]  # (a, 1)
    x0, y0, x1, y1 = (xyxy[:, i][None, :] for i in range(4))  # (1, n)
    ltrb = np.stack([x - x0, y - y0, x1 - x, y1 - y], axis=2)  # (a, n, 4)
    inside = ltrb.min(axis=2) > 0
    near = (np.abs(x - (x0 + x1) / 2) < radius * stride) & (np.abs(y - (y0 + y1) / 2) < radius * stride)
    area = np.where(inside & near, (x1 - x0) * (y1 - y0), np.inf)  # (a, n)
    best = area.argmin(axis=1)
    rows = np.nonzero(np.isfinite(area.min(axis=1)))[0]
    d = ltrb[rows, best[rows]]
    lr, tb = d[:, [0, 2]], d[:, [1, 3]]
    out[rows, :4] = d / size
    out[rows, 4] = np.sqrt(lr.min(1) / lr.max(1) * tb.min(1) / tb.max(1))
    out[rows, 5] = 1.0
    out[rows, 6 + label[best[rows]]] = 1.0
    return out


# --- metric -------------------------------------------------------------------------------------


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC 2010+ all-point interpolation: area under the precision envelope."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def detection_metrics(preds: list, truths: list[BoxSample], labels: tuple[str, ...], iou: float = 0.5,
                      operating_score: float = 0.25) -> dict:
    """AP at ``iou`` per class (VOC: greedy by score, each true box matched once, 'difficult' ones
    neither count nor penalise) and their mean; recall and precision of the detections scoring at
    least ``operating_score`` (the runtime's default threshold). ``preds``: Detections per image."""
    per_class, ops_tp, ops_fp, n_true = {}, 0, 0, 0
    for c, name in enumerate(labels):
        scores, hits, positives = [], [], 0
        for det, truth in zip(preds, truths):
            t = truth.label == c
            gt, hard = truth.xyxy[t], truth.difficult[t]
            positives += int((~hard).sum())
            mine = det.label_id == c
            boxes, score = det.xyxy[mine], det.score[mine]
            used = np.zeros(len(gt), bool)
            for i in np.argsort(-score, kind="stable"):
                ious = box_iou(boxes[i], gt) if len(gt) else np.zeros(0)
                j = int(ious.argmax()) if len(gt) else -1
                if j >= 0 and ious[j] >= iou:
                    if hard[j]:
                        continue  # neither a hit nor a miss
                    hit = not used[j]
                    used[j] = True
                else:
                    hit = False
                scores.append(score[i])
                hits.append(hit)
        order = np.argsort(-np.asarray(scores), kind="stable")
        tp = np.cumsum(np.asarray(hits, bool)[order])
        fp = np.cumsum(~np.asarray(hits, bool)[order])
        rec = tp / max(positives, 1)
        prec = tp / np.maximum(tp + fp, 1)
        above = np.asarray(scores)[order] >= operating_score if scores else np.zeros(0, bool)
        k = int(above.sum())
        op_tp = int(tp[k - 1]) if k else 0
        ops_tp, ops_fp, n_true = ops_tp + op_tp, ops_fp + (k - op_tp), n_true + positives
        per_class[name] = {
            "ap50": average_precision(rec, prec) if positives else float("nan"),
            "true_boxes": positives,
            "max_recall": float(rec[-1]) if len(rec) else 0.0,
        }
    aps = [v["ap50"] for v in per_class.values() if v["true_boxes"]]
    return {
        "map50": float(np.mean(aps)) if aps else float("nan"),
        "per_class": per_class,
        "recall": ops_tp / max(n_true, 1),
        "precision": ops_tp / max(ops_tp + ops_fp, 1),
        "operating_score": operating_score,
        "true_boxes": n_true,
        "images": len(truths),
    }

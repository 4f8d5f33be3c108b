"""Box datasets, read without TensorFlow (``eval`` runs on a Jetson; training reads them too).

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

import numpy as np

from .errors import UserError
from .images import IMAGE_SUFFIXES, read_image


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


def is_rename_rule(rule: str, classes: tuple[str, ...]) -> bool:
    """'pattern:class' with a non-empty pattern and one of ``classes`` (box-name rules)."""
    pattern, colon, target = rule.rpartition(":")
    return bool(colon and pattern) and target in classes

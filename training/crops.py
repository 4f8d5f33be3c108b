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
from ..deploy.errors import UserError, shell_quote
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


SAFE_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a folder name that stays inside OUT
BOX_SOURCES = ("labels", "detector", "whole")


def _write_source(root: Path, out: Path, command: str, what: str) -> None:
    """OUT/SOURCE.md: where the crops came from, the command, and the source's repository and
    licence lines (model cards read them from here)."""
    lines = [f"# Crops of {root}", "", f"- Made by: edgevision crops ({what})", f"- Command: {command}"]
    source = root / "SOURCE.md"
    if source.is_file():
        lines += [ln for ln in source.read_text(errors="replace").splitlines()
                  if re.match(r"\s*-?\s*(Source repo|License|licence|repo):", ln, re.I)]
    (out / "SOURCE.md").write_text("\n".join(lines) + "\n")


def _box_splits(root: Path, rng: np.random.Generator, val_split: float) -> dict[str, list]:
    """Labelled boxes (VOC/YOLO) by split: (path, boxes (n, 4), names) per image."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        splits = {split: read_box_folder(root / split, ("object",), ("*:object",))[0] for split in ("train", "val")}
    else:
        every = read_box_folder(root, ("object",), ("*:object",))[0]
        is_val = np.zeros(len(every), bool)
        is_val[rng.permutation(len(every))[: max(1, round(len(every) * val_split))]] = True
        splits = {"train": [s for s, v in zip(every, is_val) if not v], "val": [s for s, v in zip(every, is_val) if v]}
    return {k: [(s.path, s.xyxy, s.names) for s in v] for k, v in splits.items()}


def _class_splits(root: Path, val_split: float, seed: int) -> dict[str, list]:
    """Class-folder images by split (the split 'train' reads): (path, None, (folder,)) per image."""
    from .data import find_dataset

    dataset = find_dataset(root, val_split, seed)
    return {name: [(p, None, (dataset.classes[y],)) for p, y in zip(split.paths, split.labels)]
            for name, split in (("train", dataset.train), ("val", dataset.val))}


def write_crops(data: Path, out: Path, label_regex: str | None, margin: float = DEFAULT_MARGIN, jitter: int = 4,
                size: int = 224, seed: int = 0, log=print, val_split: float = 0.2, boxes: str = "labels",
                detector=None, command: str = "") -> dict:
    """Write ``out/{train,val}/<label>/<image>_<box>[_j<k>].jpg``; returns counts per split and label.

    ``boxes``: 'labels' (VOC/YOLO files; the label from the box name through ``label_regex``, or the
    folder), 'detector' (class folders; the most confident box of ``detector``, a Runner, on each
    photo; the label from the folder) or 'whole' (class folders of photos that are already crops:
    the whole photo is the box). Without train/ and val/ in ``data``, a seeded ``val_split`` of the
    images goes to val/ (by image, so no jittered copy of a validation box can land in train/).
    Labels must be plain folder names; others are refused and counted."""
    if boxes not in BOX_SOURCES:
        raise UserError(f"boxes must be one of {', '.join(BOX_SOURCES)}, got {boxes!r}")
    if (boxes == "detector") != (detector is not None):
        raise UserError("--detector MODEL.onnx goes with --boxes detector (and that needs one)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not empty (or not a folder): choose a new folder (nothing is "
                        "overwritten)")
    try:
        pattern = re.compile(label_regex) if label_regex and boxes == "labels" else None
    except re.error as exc:
        raise UserError(f"--label-regex is not a regular expression: {exc}") from exc
    root = Path(data)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}")
    rng = np.random.default_rng(seed)
    splits = _box_splits(root, rng, val_split) if boxes == "labels" else _class_splits(root, val_split, seed)
    counts: dict[str, dict[str, int]] = {}
    skipped = unsafe = no_box = 0
    for split, samples in splits.items():
        copies = jitter if split != "val" else 0
        for path, xyxy, names in samples:
            image = read_image(path)
            if image is None:
                raise UserError(f"cannot read {path}")
            if boxes == "whole":
                xyxy = np.float32([[0, 0, image.shape[1], image.shape[0]]])
            elif boxes == "detector":
                found = detector(image)
                if not len(found):
                    no_box += 1
                    continue
                xyxy = found.xyxy[:1]
            for i, box in enumerate(xyxy):
                label = crop_label(names[min(i, len(names) - 1)], path.parent.name, pattern)
                if label is None:
                    skipped += 1
                    continue
                if not SAFE_LABEL.fullmatch(label) or label in (".", ".."):
                    unsafe += 1
                    continue
                folder = out / split / label
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise UserError(f"cannot create {folder}: {exc.strerror}") from exc
                squares = [square_crop_box(box, margin)[0]] + [jittered(box, rng) for _ in range(copies)]
                for k, square in enumerate(squares):
                    patch = cv2.resize(crop(image, square), (size, size), interpolation=cv2.INTER_AREA)
                    target = folder / f"{path.stem}_{i}{f'_j{k}' if k else ''}.jpg"
                    n = 1
                    while target.exists():  # the same file name in two class folders of the source
                        n += 1
                        target = folder / f"{path.stem}_{i}{f'_j{k}' if k else ''}-{n}.jpg"
                    if not cv2.imwrite(str(target), patch, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                        raise UserError(f"could not write {target} (disk full or not writable); "
                                        f"{sum(sum(c.values()) for c in counts.values())} crops were written")
                    counts.setdefault(split, {}).setdefault(label, 0)
                    counts[split][label] += 1
    if not counts:
        raise UserError(f"no box name matched --label-regex {label_regex!r}" if pattern else f"no crops from {data}")
    what = {"labels": f"boxes from label files, label from {'box name ' + repr(label_regex) if pattern else 'folder'}",
            "detector": "the detector's most confident box on each photo, label from folder",
            "whole": "each photo whole, label from folder"}[boxes]
    _write_source(root, out, command or f"edgevision crops {shell_quote(root)} {shell_quote(out)}",
                  f"{what}; margin {margin}, {jitter} jittered copies per training box, seed {seed}")
    for split, by_label in counts.items():
        log(f"{split}: " + ", ".join(f"{k} {v}" for k, v in sorted(by_label.items())) + " crops")
    if skipped:
        log(f"{skipped} boxes whose name did not match --label-regex were left out")
    if unsafe:
        log(f"{unsafe} boxes whose label is not a plain folder name (letters, digits, _ . -) were refused")
    if no_box:
        log(f"{no_box} photos where the detector found no box were left out")
    return counts


def _command_line() -> str:
    """The command as typed, for SOURCE.md (and so for the model cards' retrain lines)."""
    import shlex
    import sys

    return "edgevision " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _open_model(path: Path, kind: str, flag: str, providers: str | None, say, score_threshold=None):
    """A Runner for --detector / --confirm, refused unless it is a ``kind`` model."""
    from ..deploy.runner import Runner, RunnerOptions

    runner = Runner(path, RunnerOptions(providers=providers, score_threshold=score_threshold))
    say(f"{path.name}: {runner.spec.kind}, {runner.provider_line}")
    if runner.spec.kind != kind:
        raise UserError(f"{flag} needs a {kind} model; {path.name} is a {runner.spec.kind} model")
    return runner


def crops_from_args(args, say) -> dict:
    """``edgevision crops``: check the flags, open the detector if one is named, write the crops."""
    if args.jitter < 0:
        raise UserError(f"--jitter must be 0 or more, got {args.jitter}")
    if not 0 <= args.margin <= 1:
        raise UserError(f"--margin must be within 0..1, got {args.margin}")
    if args.boxes == "landmarks":
        if args.detector is not None:
            raise UserError("--boxes landmarks cuts around the landmarks: drop --detector")
        return write_keypoint_crops(args.data, args.out, args.margin, args.jitter, seed=args.seed, log=say,
                                    command=_command_line())
    if (args.boxes == "detector") != (args.detector is not None):
        raise UserError("--boxes detector and --detector MODEL.onnx (e.g. models/hands.onnx) go together")
    detector = None if args.detector is None else _open_model(args.detector, "detect", "--detector", args.providers,
                                                               say, args.score_threshold)
    label_regex = None if args.label_from == "folder" else args.label_regex
    return write_crops(args.data, args.out, label_regex, args.margin, args.jitter, seed=args.seed, log=say,
                       boxes=args.boxes, detector=detector, command=_command_line())


def pseudo_boxes_from_args(args, say) -> dict:
    """``edgevision pseudo-boxes``: open the detector (and the confirming classifier), write the boxes."""
    detector = _open_model(args.detector, "detect", "--detector", args.providers, say, args.score_threshold)
    confirm = None if args.confirm is None else _open_model(args.confirm, "classify", "--confirm", args.providers, say)
    counts = write_pseudo_boxes(args.data, args.out, detector, confirm, args.box_name, args.min_confirm, log=say)
    _write_source(Path(args.data), args.out, _command_line(),
                  "pseudo-labelled boxes: the detector's top box, kept where the classifier confirms the folder")
    return counts


def write_pseudo_boxes(data: Path, out: Path, detector, confirm=None, box_name: str = "hand",
                       min_confirm: float = 0.8, log=print) -> dict:
    """Pseudo-labels for a detector: on class-folder photos (DATA/<class>/ or DATA/{train,val}/<class>/)
    the detector's most confident box is written as a VOC file beside a copy of the photo, named
    ``box_name``, but only where ``confirm`` (a classifier run on the box's crop, as a chain would)
    gives the photo's folder label with at least ``min_confirm``: a lamp found instead of a hand is
    left out. Returns counts (kept, no box, not confirmed) per split."""
    import shutil

    _check_new_folder(out)
    if not SAFE_LABEL.fullmatch(box_name):
        raise UserError(f"--box-name must be a plain name, got {box_name!r}")
    splits = _class_splits(Path(data), 0.2, 0)
    counts: dict[str, dict[str, int]] = {}
    for split, samples in splits.items():
        c = counts.setdefault(split, {"kept": 0, "no box": 0, "not confirmed": 0})
        for path, _, (label,) in samples:
            image = read_image(path)
            if image is None:
                continue
            found = detector(image)
            if not len(found):
                c["no box"] += 1
                continue
            box = found.xyxy[0]
            if confirm is not None:
                answer = confirm(crop(image, square_crop_box(box, DEFAULT_MARGIN)[0]))
                if answer.label != label or answer.score < min_confirm:
                    c["not confirmed"] += 1
                    continue
            folder = out / split / label
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / path.name)
            write_voc(folder / f"{path.stem}.xml", path.name, image.shape[:2], box[None], box_name)
            c["kept"] += 1
    for split, c in counts.items():
        log(f"{split}: {c['kept']} photos boxed, {c['no box']} without a box, {c['not confirmed']} not confirmed")
    return counts


def _check_new_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not empty: choose a new folder (nothing is overwritten)")


def write_voc(path: Path, image_name: str, hw: tuple[int, int], xyxy: np.ndarray, name: str) -> None:
    """One Pascal VOC file: boxes ``xyxy`` (n, 4) in 0-based source pixels, all named ``name``."""
    from xml.sax.saxutils import escape

    h, w = hw
    objects = "".join(
        f"<object><name>{escape(name)}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin>"
        f"<ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for x0, y0, x1, y1 in (tuple(int(round(float(v))) for v in box) for box in xyxy))
    path.write_text(f"<annotation><filename>{escape(image_name)}</filename><size><width>{w}</width>"
                    f"<height>{h}</height><depth>3</depth></size>{objects}</annotation>\n")


# A face box from 68 iBUG landmarks, shaped like the boxes of ordinary face sets (faces/, WIDER FACE):
# the jaw's width, from a little above the brows to the chin. Measured by eye against faces/' unmasked
# close-ups, whose boxes start at mid-forehead.
JAW, BROWS = slice(0, 17), slice(17, 27)
BROW_LIFT = 0.15  # the top edge: the brows' top, raised by this share of the brows-to-chin height


def landmark_face_box(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(4,) xyxy face box, clipped to the image, from (68, 2) iBUG landmarks in source pixels."""
    if points.shape != (68, 2):
        raise ValueError(f"points must have shape (68, 2), got {points.shape}")
    x0, x1 = points[JAW, 0].min(), points[JAW, 0].max()
    brow, chin = points[BROWS, 1].min(), points[JAW, 1].max()
    y0 = brow - BROW_LIFT * (chin - brow)
    h, w = hw
    return np.clip(np.array([x0, y0, x1, chin], np.float32), 0, [w, h, w, h])


def write_landmark_boxes(data: Path, out: Path, box_name: str = "face", log=print) -> dict:
    """A keypoint set with 68-point landmarks (``DATA/{train,val}/images/`` + ``landmarks68.csv``, as
    ../shared/data/nose) -> a box set for a face detector: a copy of each photo with a VOC file
    holding the face box drawn from its landmarks (``landmark_face_box``). Returns photos per split."""
    import csv
    import shutil

    _check_new_folder(out)
    if not SAFE_LABEL.fullmatch(box_name):
        raise UserError(f"--box-name must be a plain name, got {box_name!r}")
    data = Path(data)
    splits = [s for s in ("train", "val") if (data / s / "landmarks68.csv").is_file()]
    if not splits and (data / "landmarks68.csv").is_file():
        splits = [""]
    if not splits:
        raise UserError(f"{data} has no landmarks68.csv (in DATA/ or DATA/train/ and DATA/val/)")
    counts: dict[str, int] = {}
    for split in splits:
        table = data / split / "landmarks68.csv"
        with table.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        counts[split or "."] = 0
        for n, row in enumerate(rows[1:], 2):
            if len(row) != 1 + 68 * 2:
                raise UserError(f"{table}:{n}: expected a file name and 136 numbers, got {len(row)} cells")
            try:
                points = np.array(row[1:], np.float32).reshape(68, 2)
            except ValueError as exc:
                raise UserError(f"{table}:{n}: {exc}") from exc
            path = data / split / "images" / row[0]
            image = read_image(path)
            if image is None:
                log(f"skipped {path}: not a readable image")
                continue
            shutil.copyfile(path, folder / path.name)
            write_voc(folder / f"{path.stem}.xml", path.name, image.shape[:2],
                      landmark_face_box(points, image.shape[:2])[None], box_name)
            counts[split or "."] += 1
    _write_source(data, out, _command_line(), "face boxes drawn from 68-point landmarks")
    for split, c in counts.items():
        log(f"{split}: {c} photos boxed")
    return counts


def write_keypoint_crops(data: Path, out: Path, margin: float = DEFAULT_MARGIN, jitter: int = 4, size: int = 224,
                         seed: int = 0, log=print, command: str = "") -> dict:
    """A keypoint set with 68-point landmarks (``DATA/{train,val}/images/`` + ``labels.csv`` +
    ``landmarks68.csv``, as ../shared/data/nose) -> the same layout of square face crops, cut as a
    face chain cuts them: the face box from the landmarks (``landmark_face_box``), widened by
    ``margin`` (val) or by jittered margins and centres (``jitter`` extra copies per training face).
    Every point of both CSVs is moved into the crop's pixels, so the NME is still normalised by the
    outer eye corners. Returns crops per split."""
    import csv

    _check_new_folder(out)
    data = Path(data)
    splits = [s for s in ("train", "val") if (data / s / "labels.csv").is_file()]
    if not splits:
        raise UserError(f"{data} has no train/labels.csv and val/labels.csv")
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for split in splits:
        tables = {}
        for name in ("labels.csv", "landmarks68.csv"):
            path = data / split / name
            if not path.is_file():
                raise UserError(f"{path} is missing: the face box comes from the 68 landmarks")
            with path.open(newline="", encoding="utf-8-sig") as f:
                rows = list(csv.reader(f))
            tables[name] = (rows[0], {r[0]: r[1:] for r in rows[1:] if r})
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        written = {name: [header] for name, (header, _) in tables.items()}
        counts[split] = 0
        for file, landmark_row in tables["landmarks68.csv"][1].items():
            label_row = tables["labels.csv"][1].get(file)
            image = read_image(data / split / "images" / file) if label_row is not None else None
            if image is None:
                continue
            try:
                landmarks = np.array(landmark_row, np.float32).reshape(68, 2)
                labelled = np.array(label_row, np.float32).reshape(-1, 2)
            except ValueError as exc:
                raise UserError(f"{data / split}: the row of {file} is not all numbers: {exc}") from exc
            box = landmark_face_box(landmarks, image.shape[:2])
            copies = jitter if split == "train" else 0
            squares = [square_crop_box(box, margin)[0]] + [jittered(box, rng) for _ in range(copies)]
            for k, square in enumerate(squares):
                corner = np.round(square[:2])
                patch = crop(image, square)
                scale = np.float32([size / patch.shape[1], size / patch.shape[0]])
                patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
                name = f"{Path(file).stem}{f'_j{k}' if k else ''}.jpg"
                if not cv2.imwrite(str(out / split / "images" / name), patch, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                    raise UserError(f"could not write {out / split / 'images' / name} (disk full or not writable)")
                for table, points in (("labels.csv", labelled), ("landmarks68.csv", landmarks)):
                    moved = (points - corner) * scale
                    written[table].append([name, *(f"{v:.2f}" for v in moved.reshape(-1))])
                counts[split] += 1
        for table, rows in written.items():
            with (out / split / table).open("w", newline="") as f:
                csv.writer(f).writerows(rows)
    _write_source(data, out, command or _command_line(),
                  f"square face crops from 68-landmark boxes; margin {margin}, {jitter} jittered copies per "
                  f"training face, {size} px, seed {seed}")
    for split, c in counts.items():
        log(f"{split}: {c} crops")
    return counts

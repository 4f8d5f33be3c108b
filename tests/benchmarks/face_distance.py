#!/usr/bin/env python3
"""Make "webcam distance" proxy sets from val photos (deterministic, seed 0).

Each val photo (a face close-up) is shrunk (cv2.INTER_AREA) so that its height is a random
20-40% of a 640x480 frame (height h' = round(U(0.2, 0.4) * 480), width by the photo's aspect
ratio, capped at 640), and pasted whole at a random integer position inside a 640x480
background. Backgrounds: the raccoon photos of ../shared/data/raccoon/{val,train}/*.jpg
(sorted, minus EXCLUDED_BACKGROUNDS), each scaled to cover 640x480 (cv2.INTER_AREA when
shrinking, INTER_LINEAR when enlarging) and centre-cropped. Frames are written as JPEG quality 95.

Random draws, in this order per photo, from numpy.random.default_rng(0) (one generator per set,
photos in sorted order: emotions = happy then sad, nose = labels.csv sorted by file):
background index (integers), height share (uniform 0.2..0.4), x offset, y offset (integers,
so the photo lies fully inside the frame).

Points (nose/labels.csv and landmarks68.csv) are mapped with the continuous-pixel convention that
the edgevision runtime uses for keypoints (deploy/ops.fit_to_input: x' = x * sx + ox), with
sx = w'/w, sy = h'/h and (ox, oy) the paste offset. Landmarks outside the photo (negative
coordinates in the source csv) are transformed the same way.

Usage:  python tests/benchmarks/face_distance.py [--data ../shared/data] [--out runs/face_distance]
"""
from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import cv2
import numpy as np

FRAME_W, FRAME_H = 640, 480
SHARE = (0.2, 0.4)
SEED = 0
JPEG_QUALITY = 95
# Raccoon photos left out as backgrounds because they show a human face, whole or in part (found by
# eye on contact sheets of all 152 cover-cropped candidates, check/bg_sheet_*.png, and cross-checked
# with MediaPipe face detection: `tests/benchmarks/mediapipe_faces.py --check-backgrounds`; its model 1
# flags 13 photos, all
# of them here; model 0 also flags 33 raccoon faces, kept). Hands and feet are kept.
EXCLUDED_BACKGROUNDS: tuple[str, ...] = (
    "val/raccoon-181.jpg", "train/raccoon-100.jpg", "train/raccoon-104.jpg", "train/raccoon-105.jpg",
    "train/raccoon-136.jpg", "train/raccoon-160.jpg", "train/raccoon-163.jpg", "train/raccoon-172.jpg",
    "train/raccoon-174.jpg", "train/raccoon-175.jpg", "train/raccoon-180.jpg", "train/raccoon-182.jpg",
    "train/raccoon-183.jpg", "train/raccoon-19.jpg", "train/raccoon-193.jpg", "train/raccoon-196.jpg",
    "train/raccoon-26.jpg",
)


def background_paths(data: Path) -> list[Path]:
    paths = sorted((data / "raccoon" / "val").glob("*.jpg")) + sorted((data / "raccoon" / "train").glob("*.jpg"))
    return [p for p in paths if f"{p.parent.name}/{p.name}" not in EXCLUDED_BACKGROUNDS]


def cover_crop(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    s = max(FRAME_W / w, FRAME_H / h)
    nw, nh = max(FRAME_W, round(w * s)), max(FRAME_H, round(h * s))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    x0, y0 = (nw - FRAME_W) // 2, (nh - FRAME_H) // 2
    return resized[y0 : y0 + FRAME_H, x0 : x0 + FRAME_W].copy()


class Paster:
    def __init__(self, data: Path) -> None:
        self.backgrounds = background_paths(data)
        self.cache: dict[int, np.ndarray] = {}
        self.rng = np.random.default_rng(SEED)

    def background(self, i: int) -> np.ndarray:
        if i not in self.cache:
            image = cv2.imread(str(self.backgrounds[i]), cv2.IMREAD_COLOR)
            if image is None:
                raise OSError(self.backgrounds[i])
            self.cache[i] = cover_crop(image)
        return self.cache[i].copy()

    def paste(self, photo: np.ndarray) -> tuple[np.ndarray, dict]:
        """-> the frame, and the transform (sx, sy, ox, oy, background, size)."""
        b = int(self.rng.integers(len(self.backgrounds)))
        share = float(self.rng.uniform(*SHARE))
        h, w = photo.shape[:2]
        nh = round(share * FRAME_H)
        nw = round(w * nh / h)
        if nw > FRAME_W:  # a very wide photo: cap the width, keep the aspect ratio
            nw = FRAME_W
            nh = round(h * nw / w)
        ox = int(self.rng.integers(0, FRAME_W - nw + 1))
        oy = int(self.rng.integers(0, FRAME_H - nh + 1))
        frame = self.background(b)
        frame[oy : oy + nh, ox : ox + nw] = cv2.resize(photo, (nw, nh), interpolation=cv2.INTER_AREA)
        bg = self.backgrounds[b]
        return frame, {"sx": nw / w, "sy": nh / h, "ox": ox, "oy": oy, "background": f"{bg.parent.name}/{bg.name}",
                       "w": nw, "h": nh}


def write_jpg(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"cannot write {path}")


def make_emotions(data: Path, out: Path) -> list[dict]:
    paster, log = Paster(data), []
    for cls in ("happy", "sad"):
        dst = out / "emotions" / cls
        dst.mkdir(parents=True, exist_ok=True)
        for p in sorted((data / "emotions" / "val" / cls).glob("*.jpg")):
            photo = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if photo is None:
                raise OSError(p)
            frame, t = paster.paste(photo)
            write_jpg(dst / p.name, frame)
            log.append({"set": "emotions", "file": f"{cls}/{p.name}", **t})
    return log


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _fmt(v: float) -> str:
    return f"{v:.3f}"


def make_nose(data: Path, out: Path) -> list[dict]:
    src = data / "nose" / "val"
    dst = out / "nose"
    (dst / "images").mkdir(parents=True, exist_ok=True)
    fields, rows = _read_csv(src / "labels.csv")
    lm_fields, lm_rows = ([], [])
    if (src / "landmarks68.csv").is_file():
        lm_fields, lm_rows = _read_csv(src / "landmarks68.csv")
    landmarks = {r["file"]: r for r in lm_rows}
    paster, log, out_rows, out_lm = Paster(data), [], [], []
    for row in sorted(rows, key=lambda r: r["file"]):
        photo = cv2.imread(str(src / "images" / row["file"]), cv2.IMREAD_COLOR)
        if photo is None:
            raise OSError(src / "images" / row["file"])
        frame, t = paster.paste(photo)
        write_jpg(dst / "images" / row["file"], frame)
        new = {"file": row["file"]}
        for name in fields[1:]:  # *_x / *_y columns in pixels
            v = float(row[name])
            new[name] = _fmt(v * t["sx"] + t["ox"] if name.endswith("_x") else v * t["sy"] + t["oy"])
        out_rows.append(new)
        if row["file"] in landmarks:
            lm = landmarks[row["file"]]
            new_lm = {"file": row["file"]}
            for name in lm_fields[1:]:  # x0,y0,...,x67,y67
                v = float(lm[name])
                new_lm[name] = _fmt(v * t["sx"] + t["ox"] if name.startswith("x") else v * t["sy"] + t["oy"])
            out_lm.append(new_lm)
        log.append({"set": "nose", "file": row["file"], **t})
    with open(dst / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(out_rows)
    if lm_fields:
        with open(dst / "landmarks68.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=lm_fields)
            w.writeheader()
            w.writerows(out_lm)
    return log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "distance")
    args = ap.parse_args()
    for sub in ("emotions", "nose"):  # rebuilt from scratch every time
        if (args.out / sub).exists():
            shutil.rmtree(args.out / sub)
    args.out.mkdir(parents=True, exist_ok=True)
    log = make_emotions(args.data, args.out) + make_nose(args.data, args.out)
    with open(args.out / "transforms.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(log[0]))
        w.writeheader()
        w.writerows(log)
    n_bg = len(background_paths(args.data))
    print(f"wrote {sum(r['set'] == 'emotions' for r in log)} emotions and {sum(r['set'] == 'nose' for r in log)} "
          f"nose frames to {args.out} ({n_bg} backgrounds, {len(EXCLUDED_BACKGROUNDS)} excluded)")


if __name__ == "__main__":
    main()

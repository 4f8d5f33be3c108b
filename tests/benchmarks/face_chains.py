#!/usr/bin/env python3
"""Measure a face model or a face chain (detector -> happy/sad or nose on the face crop).

    face_chains.py MODEL_OR_PIPELINE {emotions|nose} DIR [DIR...] [--then SECOND.onnx]
               [--margin M] [--threshold T] [--json out.json] [--threads N]

MODEL_OR_PIPELINE: an edgevision .onnx, or a pipeline .json ({"model": ..., "then": ...}).
A detector .onnx with --then SECOND.onnx makes the chain from two paths (edgevision.load(det,
then=second, crop_margin=M, score_threshold=T)); --margin/--threshold override a pipeline file's
crop_margin/score_threshold too (unset: the file's values, else edgevision's defaults: margin
0.15, the detector spec's own threshold).

Loaded with the edgevision Python API (edgevision.load), on the CPU provider (providers="cpu").
A chain's answer is the then-result of its MOST CONFIDENT detection (highest detector score);
a frame with no detection counts as wrong (emotions) or as NME 1.0 and a miss (nose), and is
counted in no_face. A plain model (not a chain) runs on the whole image.

DIR layouts
  emotions: DIR/<class>/*.jpg (classes happy, sad: the folder name is the truth)
  nose:     DIR/images/*.jpg + DIR/labels.csv (file,nose_x,nose_y) [+ DIR/landmarks68.csv]

Metrics
  emotions: n, accuracy, recall of happy and of sad, no_face, mean ms per image.
  nose:     n, mean NME, share of images with NME < 0.1 (strict), no_face, mean ms per image.
  NME (the same normaliser as models/nose.md / edgevision.training.keypoints.read_points):
    NME = |predicted nose - true nose| (Euclidean, source-image pixels) / the distance between
    the outer eye corners, iBUG-68 points 36 and 45 of landmarks68.csv; if ANY image of the
    folder lacks landmarks the norm falls back to each image's diagonal for ALL images (as
    read_points does), and the report says "diagonal".
  top box on the pasted photo (chains on a distance proxy only, a diagnostic): frames whose most
    confident box's centre lies inside the rectangle the photo was pasted into (transforms.csv).
  ms per image: wall time of one model.predict([frame]) call (preprocess + detector + crops +
    second model + decode; image decoding excluded), batch 1, after one warm-up call, averaged
    over the folder. This machine's 2 cores are shared with other work: read ms as rough.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import cv2
import edgevision
import numpy as np
from edgevision.deploy.results import Chained, Classification, Keypoints

IBUG_OUTER_CORNERS = (36, 45)
EMOTION_CLASSES = ("happy", "sad")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def nose_truth(folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray, str]:
    """(paths, (n, 2) true nose, (n,) norm, norm kind): the normaliser of training/keypoints.read_points."""
    rows = read_csv(folder / "labels.csv")
    lm_path = folder / "landmarks68.csv"
    landmarks = {r["file"]: r for r in read_csv(lm_path)} if lm_path.is_file() else {}
    paths, pts, norms = [], [], []
    for row in rows:
        p = folder / "images" / row["file"]
        if not p.is_file():
            continue
        paths.append(p)
        pts.append((float(row["nose_x"]), float(row["nose_y"])))
        lm = landmarks.get(row["file"])
        a, b = IBUG_OUTER_CORNERS
        norms.append(math.dist((float(lm[f"x{a}"]), float(lm[f"y{a}"])), (float(lm[f"x{b}"]), float(lm[f"y{b}"])))
                     if lm else float("nan"))
    norm, kind = np.asarray(norms, np.float64), "inter-ocular (iBUG 36-45)"
    if np.isnan(norm).any():
        kind = "diagonal"
        norm = np.asarray([math.hypot(*cv2.imread(str(p)).shape[:2]) for p in paths])
    return paths, np.asarray(pts, np.float64), norm, kind


def emotion_items(folder: Path) -> list[tuple[Path, str]]:
    items = []
    for cls in EMOTION_CLASSES:
        items += [(p, cls) for p in sorted((folder / cls).glob("*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    if not items:
        raise SystemExit(f"{folder}: no images under {'/'.join(EMOTION_CLASSES)}/")
    return items


def pasted_rects(folder: Path, subset: str) -> dict:
    """{file relative to DIR: (x0, y0, x1, y1)} of the pasted photo when DIR is a distance proxy
    (face_distance.py writes transforms.csv beside it); {} otherwise."""
    path = folder.parent / "transforms.csv"
    if not path.is_file():
        return {}
    return {r["file"]: (int(r["ox"]), int(r["oy"]), int(r["ox"]) + int(r["w"]), int(r["oy"]) + int(r["h"]))
            for r in read_csv(path) if r["set"] == subset}


def top_box(result):
    if isinstance(result, Chained) and len(result.detections):
        return result.detections.xyxy[int(np.argmax(result.detections.score))]
    return None


def on_photo(result, rect) -> bool | None:
    """None: not a chain, or not a proxy frame; False: no box, or the top box is off the photo."""
    if rect is None or not isinstance(result, Chained):
        return None
    box = top_box(result)
    if box is None:
        return False
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return bool(rect[0] <= cx <= rect[2] and rect[1] <= cy <= rect[3])


def on_count(per: list[dict]) -> int | None:
    """How many frames' most confident box is centred on the pasted photo (None: not a chain on a proxy)."""
    flags = [r["top_on_pasted_photo"] for r in per]
    return None if any(f is None for f in flags) else sum(flags)


def answer(result):
    """-> (second-stage result or None, detector score or None, number of detections)."""
    if isinstance(result, Chained):
        if len(result.detections) == 0:
            return None, None, 0
        i = int(np.argmax(result.detections.score))
        return result.then[i], float(result.detections.score[i]), len(result.detections)
    return result, None, None


def timed(model, frame) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = model.predict([frame])[0]
    return out, (time.perf_counter() - t0) * 1e3


def measure_emotions(model, folder: Path) -> dict:
    items = emotion_items(folder)
    rects = pasted_rects(folder, "emotions")
    model.predict([cv2.imread(str(items[0][0]))])  # warm-up
    per, ms = [], []
    for path, truth in items:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        result, dt = timed(model, frame)
        ms.append(dt)
        then, det_score, n_det = answer(result)
        if then is not None and not isinstance(then, Classification):
            raise SystemExit(f"the model gives {type(then).__name__}, not a classification")
        label = then.label if then is not None else None
        per.append({"file": f"{truth}/{path.name}", "truth": truth, "pred": label,
                    "score": None if then is None else round(then.score, 4),
                    "det_score": None if det_score is None else round(det_score, 4), "n_det": n_det,
                    "top_on_pasted_photo": on_photo(result, rects.get(f"{truth}/{path.name}"))})
    right = [r["pred"] == r["truth"] for r in per]
    out = {"dir": str(folder), "task": "emotions", "n": len(per), "accuracy": float(np.mean(right))}
    for cls in EMOTION_CLASSES:
        mine = [r["pred"] == cls for r in per if r["truth"] == cls]
        out[f"{cls}_recall"] = float(np.mean(mine)) if mine else float("nan")
        out[f"{cls}_n"] = len(mine)
    out["no_face"] = sum(r["pred"] is None for r in per)
    out["top_on_pasted_photo"] = on_count(per)
    out["ms_mean"] = float(np.mean(ms))
    out["images"] = per
    return out


def measure_nose(model, folder: Path) -> dict:
    paths, truth, norm, kind = nose_truth(folder)
    rects = pasted_rects(folder, "nose")
    model.predict([cv2.imread(str(paths[0]))])  # warm-up
    per, ms = [], []
    for path, t, n in zip(paths, truth, norm):
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        result, dt = timed(model, frame)
        ms.append(dt)
        then, det_score, n_det = answer(result)
        if then is None:
            nme, xy = 1.0, None  # no face: NME 1.0, and a miss
        else:
            if not isinstance(then, Keypoints):
                raise SystemExit(f"the model gives {type(then).__name__}, not keypoints")
            j = then.names.index("nose") if "nose" in then.names else 0
            xy = then.xy[j].astype(np.float64)
            nme = float(np.linalg.norm(xy - t) / n)
        pred = None if xy is None else [round(float(v), 2) for v in xy]
        per.append({"file": path.name, "nme": round(nme, 5), "pred": pred,
                    "truth": [float(v) for v in t], "norm": round(float(n), 3),
                    "det_score": None if det_score is None else round(det_score, 4), "n_det": n_det,
                    "top_on_pasted_photo": on_photo(result, rects.get(path.name))})
    nmes = np.asarray([r["nme"] for r in per])
    return {"dir": str(folder), "task": "nose", "n": len(per), "nme_mean": float(nmes.mean()),
            "nme_median": float(np.median(nmes)), "share_below_0.1": float((nmes < 0.1).mean()),
            "no_face": sum(r["pred"] is None for r in per), "top_on_pasted_photo": on_count(per),
            "ms_mean": float(np.mean(ms)), "norm": kind,
            "images": per}


def load(args):
    kw = {"providers": "cpu", "threads": args.threads}
    is_pipeline = args.model.suffix.lower() == ".json"
    if is_pipeline or args.then:
        kw.update(crop_margin=args.margin, score_threshold=args.threshold)
        return edgevision.load(args.model, then=args.then, **kw)
    if args.margin is not None:
        raise SystemExit("--margin is for a chain (a pipeline .json, or a detector with --then)")
    return edgevision.load(args.model, score_threshold=args.threshold, **kw)


def describe(model) -> dict:
    runner = model.runner
    d = {"model": str(model.path), "kind": model.kind}
    if model.kind == "chain":
        first = runner.first
        d.update(then=str(runner.then.path), margin=runner.margin,
                 threshold=first.options.score_threshold if first.options.score_threshold is not None
                 else first.spec.score_threshold)
    return d


def onp(r: dict) -> str:
    top = r["top_on_pasted_photo"]
    return "" if top is None else f"  top box on the pasted photo {top}/{r['n']}"


def main() -> None:
    ap = argparse.ArgumentParser(description="face chain / model measurement (see the module doc)")
    ap.add_argument("model", type=Path, help="an edgevision .onnx or a pipeline .json")
    ap.add_argument("task", choices=("emotions", "nose"))
    ap.add_argument("dirs", type=Path, nargs="+")
    ap.add_argument("--then", type=Path, help="second model: with a detector .onnx makes a chain")
    ap.add_argument("--margin", type=float, help="chain crop_margin override")
    ap.add_argument("--threshold", type=float, help="detector score_threshold override")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime CPU threads (0: its default)")
    ap.add_argument("--json", type=Path, help="write all numbers and per-image answers here")
    args = ap.parse_args()
    model = load(args)
    info = describe(model)
    head = f"{args.model.name}" + (f" -> {model.runner.then.path.name} margin {model.runner.margin}"
                                   f" threshold {info['threshold']}"
                                   if model.kind == "chain" else "")
    print(f"# {head} [{model.kind}] {model.provider}")
    reports = []
    for folder in args.dirs:
        r = measure_emotions(model, folder) if args.task == "emotions" else measure_nose(model, folder)
        reports.append(r)
        if args.task == "emotions":
            print(f"{folder}: n {r['n']}  accuracy {r['accuracy']:.3f}  happy recall {r['happy_recall']:.3f} "
                  f"(of {r['happy_n']})  sad recall {r['sad_recall']:.3f} (of {r['sad_n']})  no face {r['no_face']}  "
                  f"{r['ms_mean']:.1f} ms/image" + onp(r))
        else:
            print(f"{folder}: n {r['n']}  NME mean {r['nme_mean']:.4f} median {r['nme_median']:.4f}  "
                  f"<0.1 {100 * r['share_below_0.1']:.1f}%  no face {r['no_face']}  {r['ms_mean']:.1f} ms/image  "
                  f"(norm {r['norm']})" + onp(r))
    if args.json:
        args.json.write_text(json.dumps({**info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": reports}, indent=1))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""MediaPipe peer for the face chains: legacy mp.solutions.face_detection, model_selection 0 and 1.

Runs in its own venv (mediapipe 0.10.14 needs numpy<2), no edgevision imports:
    python3 -m venv ../mp-venv && ../mp-venv/bin/pip install "mediapipe==0.10.14" "numpy<2" opencv-python-headless
    ../mp-venv/bin/python tests/benchmarks/mediapipe_faces.py [--json mp.json]
    ../mp-venv/bin/python tests/benchmarks/mediapipe_faces.py --check-backgrounds  # faces in the backgrounds?

FaceDetection(model_selection=m) with the default min_detection_confidence (0.5; the legacy API
ignores other values at some versions, mediapipe issue #3896), one .process() per RGB image.

a. Nose: keypoint 2 (NOSE_TIP) of the most confident face (highest detection score), relative
   coordinates times the image width/height -> pixels. NME = |pred - true| / distance of the outer
   eye corners (iBUG-68 points 36 and 45 of landmarks68.csv; image diagonal for all images if any
   lacks them), the normaliser of models/nose.md and face_chains.py. No face = NME 1.0 and a miss
   (counted in no_face). Reported: mean and median NME, share with NME < 0.1 (strict), and the mean
   with each image's NME capped at 1.0 (a wrong face then costs what no face costs).
b. Face AP50 on faces/val (*.jpg with a Pascal VOC *.xml beside each; every object is 'face'):
   VOC all-point interpolated AP at IoU >= 0.5, greedy by score, each true box matched once,
   'difficult' boxes neither hit nor miss (none are marked in this set), continuous pixel
   coordinates without the VOC "+1". Box = relative_bounding_box x width/height, clipped to the
   image; score = detection.score[0]. Only detections >= 0.5 exist (the default threshold), so
   the precision-recall curve ends there. Same AP code as camera/bench_mediapipe.py (copied).
c. On the emotions distance proxy: how often any face is found, and how often the most confident
   face's box centre lies inside the pasted photo's rectangle (distance/transforms.csv).
d. Latency: mean (and median) wall time of .process() only (RGB array in, no decode) over the 640x480
   frames of the distance proxies (emotions + nose), after 3 warm-up calls; this 2-core machine
   is shared with other work, so read it as rough.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import os
import sys
import time

import cv2
import mediapipe as mp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "camera"))  # the hands peer's VOC reading and AP, run as a script
from bench_mediapipe import read_rgb, read_voc, voc_ap  # noqa: E402

DATA = "../shared/data"
DIST = "runs/face_distance"  # tests/benchmarks/face_distance.py's default output
NOSE_DIRS = [f"{DATA}/nose/val", f"{DIST}/nose"]
FACES_VAL = f"{DATA}/faces/val"
EMO_DIST = f"{DIST}/emotions"
NOSE_TIP = 2  # mp.solutions.face_detection.FaceKeyPoint.NOSE_TIP


class Detector:
    def __init__(self, model_selection):
        self.m = model_selection
        self.fd = mp.solutions.face_detection.FaceDetection(model_selection=model_selection)
        warm = np.zeros((480, 640, 3), np.uint8)
        for _ in range(3):
            self.fd.process(warm)

    def __call__(self, rgb):
        """-> list of (score, box xyxy clipped, nose xy) in pixels, and the ms of .process()."""
        h, w = rgb.shape[:2]
        t0 = time.perf_counter()
        res = self.fd.process(rgb)
        ms = (time.perf_counter() - t0) * 1e3
        out = []
        for d in res.detections or []:
            bb = d.location_data.relative_bounding_box
            box = [max(0.0, bb.xmin * w), max(0.0, bb.ymin * h),
                   min(float(w), (bb.xmin + bb.width) * w), min(float(h), (bb.ymin + bb.height) * h)]
            kp = d.location_data.relative_keypoints[NOSE_TIP]
            out.append((float(d.score[0]), box, (kp.x * w, kp.y * h)))
        return out, ms


def read_csv(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def nose_truth(folder):
    """Same as face_chains.py / training/keypoints.read_points: inter-ocular (iBUG 36-45) norm."""
    rows = read_csv(f"{folder}/labels.csv")
    lm_path = f"{folder}/landmarks68.csv"
    lms = {r["file"]: r for r in read_csv(lm_path)} if os.path.isfile(lm_path) else {}
    items, norms = [], []
    for r in rows:
        p = f"{folder}/images/{r['file']}"
        if not os.path.isfile(p):
            continue
        items.append((p, (float(r["nose_x"]), float(r["nose_y"]))))
        lm = lms.get(r["file"])
        norms.append(math.dist((float(lm["x36"]), float(lm["y36"])), (float(lm["x45"]), float(lm["y45"])))
                     if lm else float("nan"))
    kind = "inter-ocular (iBUG 36-45)"
    if any(math.isnan(n) for n in norms):
        kind = "diagonal"
        norms = [math.hypot(*cv2.imread(p).shape[:2]) for p, _ in items]
    return items, norms, kind


def eval_nose(det, folder):
    items, norms, kind = nose_truth(folder)
    nmes, no_face, ms = [], 0, []
    for (path, truth), norm in zip(items, norms):
        faces, dt = det(read_rgb(path))
        ms.append(dt)
        if not faces:
            nmes.append(1.0)
            no_face += 1
            continue
        _, _, nose = max(faces, key=lambda f: f[0])
        nmes.append(math.dist(nose, truth) / norm)
    a = np.asarray(nmes)
    return {"dir": folder, "n": len(a), "nme_mean": float(a.mean()), "nme_mean_capped1": float(np.minimum(a, 1).mean()),
            "nme_median": float(np.median(a)),
            "share_below_0.1": float((a < 0.1).mean()), "no_face": no_face, "norm": kind,
            "ms_mean": float(np.mean(ms))}


def eval_faces(det, folder):
    gts, dets = {}, []
    for p in sorted(glob.glob(f"{folder}/*.jpg")):
        x = p[:-4] + ".xml"
        if not os.path.isfile(x):
            continue
        boxes, difficult, _ = read_voc(x)
        gts[p] = (boxes, difficult)
        faces, _ = det(read_rgb(p))
        dets += [(p, s, b) for s, b, _ in faces]
    return {"dir": folder, "images": len(gts), **voc_ap(dets, gts)}


def pasted_rects(folder):
    """{relative file: (x0, y0, x1, y1)} of the pasted photo, from the proxy's transforms.csv."""
    path = os.path.join(os.path.dirname(folder.rstrip("/")), "transforms.csv")
    if not os.path.isfile(path):
        return {}
    return {r["file"]: (int(r["ox"]), int(r["oy"]), int(r["ox"]) + int(r["w"]), int(r["oy"]) + int(r["h"]))
            for r in read_csv(path) if r["set"] == os.path.basename(folder.rstrip("/"))}


def eval_found(det, folder):
    """Any face found; and the most confident face's box centre inside the pasted photo."""
    paths = sorted(glob.glob(f"{folder}/*/*.jpg"))
    rects = pasted_rects(folder)
    found = on_photo = 0
    for p in paths:
        faces, _ = det(read_rgb(p))
        if faces:
            found += 1
            _, (x0, y0, x1, y1), _ = max(faces, key=lambda f: f[0])
            r = rects.get(os.path.relpath(p, folder))
            on_photo += int(r is not None and r[0] <= (x0 + x1) / 2 <= r[2] and r[1] <= (y0 + y1) / 2 <= r[3])
    return {"dir": folder, "n": len(paths), "found": found, "found_share": found / max(len(paths), 1),
            "top_on_pasted_photo": on_photo}


def latency(det):
    paths = sorted(glob.glob(f"{EMO_DIST}/*/*.jpg")) + sorted(glob.glob(f"{DIST}/nose/images/*.jpg"))
    ms = []
    for p in paths:
        rgb = read_rgb(p)
        assert rgb.shape[:2] == (480, 640), p
        ms.append(det(rgb)[1])
    return {"frames": len(ms), "ms_mean": float(np.mean(ms)), "ms_median": float(np.median(ms))}


def check_backgrounds():
    sys.path.insert(0, HERE)
    from pathlib import Path

    import face_distance as md  # cover_crop and the background list (numpy + cv2 only)
    paths = sorted(Path(f"{DATA}/raccoon/val").glob("*.jpg")) + sorted(Path(f"{DATA}/raccoon/train").glob("*.jpg"))
    dets = [Detector(0), Detector(1)]
    flagged = []
    for i, p in enumerate(paths):
        frame = cv2.cvtColor(md.cover_crop(cv2.imread(str(p))), cv2.COLOR_BGR2RGB)
        scores = [max([f[0] for f in d(frame)[0]], default=0.0) for d in dets]
        if max(scores) > 0:
            flagged.append((i, f"{p.parent.name}/{p.name}", *scores))
    excluded = set(md.EXCLUDED_BACKGROUNDS)
    print(f"{len(paths)} raccoon photos (cover-cropped to 640x480); MediaPipe finds a face in {len(flagged)}:")
    for i, name, s0, s1 in flagged:
        print(f"  #{i:3d} {name:28s} M0 {s0:.2f} M1 {s1:.2f} {'(excluded)' if name in excluded else 'NOT EXCLUDED'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json")
    ap.add_argument("--check-backgrounds", action="store_true")
    args = ap.parse_args()
    if args.check_backgrounds:
        return check_backgrounds()
    out = {"mediapipe": mp.__version__}
    for m in (0, 1):
        det = Detector(m)
        r = {"nose": [eval_nose(det, d) for d in NOSE_DIRS], "faces_val": eval_faces(det, FACES_VAL),
             "emotions_distance_found": eval_found(det, EMO_DIST), "latency_640x480": latency(det)}
        out[f"model_{m}"] = r
        for n in r["nose"]:
            print(f"M{m} nose {n['dir']}: n {n['n']} NME mean {n['nme_mean']:.4f} "
                  f"(capped at 1: {n['nme_mean_capped1']:.4f}) median {n['nme_median']:.4f} "
                  f"<0.1 {100 * n['share_below_0.1']:.1f}% no face {n['no_face']}")
        f = r["faces_val"]
        print(f"M{m} faces/val: {f['images']} images, {f['n_gt']} faces: AP50 {f['AP50']:.3f} "
              f"recall {f['recall']:.3f} precision {f['precision']:.3f} ({f['n_det']} detections)")
        e = r["emotions_distance_found"]
        print(f"M{m} emotions distance: a face found in {e['found']} of {e['n']}; the most confident one on the "
              f"pasted photo in {e['top_on_pasted_photo']}")
        la = r["latency_640x480"]
        print(f"M{m} latency 640x480: mean {la['ms_mean']:.1f} ms, median {la['ms_median']:.1f} ms "
              f"({la['frames']} frames)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Peer baseline: MediaPipe 0.10.14 legacy solutions on the edgevision val photos.

Standalone (numpy + cv2 + mediapipe only, no edgevision imports). Uses only the .tflite models bundled
inside the mediapipe wheel (legacy ``mp.solutions`` API: ``hands`` and ``selfie_segmentation``); nothing
is downloaded. It runs in its own venv, not the project's, because mediapipe 0.10.14 needs numpy<2.
Set-up and command, from the repository root (``--check-dir DIR`` also draws MediaPipe boxes, red, vs
xml boxes, green, on 3 hands_webcam images)::

    python3 -m venv ../mp-venv && ../mp-venv/bin/pip install "mediapipe==0.10.14" "numpy<2"
    ../mp-venv/bin/python camera/bench_mediapipe.py --data ../shared/data --json mp.json --md mp.md

What it measures (all on the ``val/`` splits):

a. Hands as a hand detector, Pascal VOC AP50 (all-point interpolated, IoU >= 0.5, ``difficult``
   objects ignored, every object name = class "hand", continuous pixel coordinates, no VOC "+1") on
   hands_webcam/val and on the fingers_hagrid/val images that have an .xml beside them.
   Hands(static_image_mode=True, max_num_hands=4, model_complexity=1, min_detection_confidence=t,
   min_tracking_confidence=t) for t in {0.5, 0.3}; in static mode min_tracking_confidence is the
   landmark model's hand-presence threshold. Box = min/max of the 21 landmarks, each side pushed out
   by MARGIN x (box side along that axis), clipped to the image; margins 0, 0.10 (headline), 0.20.
   Score = handedness score (the only per-hand score the legacy API returns).
   Recall / precision are over all detections the model returns at threshold t.
b. Thumbs up/down: most confident hand (highest handedness score); thumbs_up if the thumb tip
   (landmark 4) is above the thumb MCP (landmark 2) in image coordinates (y4 < y2), else thumbs_down.
   "Clear" margin diagnostic: |y4 - y2| >= 0.1 x hand scale (|wrist - middle MCP|) is counted and
   reported. No hand detected = wrong.
c. Finger count 0..5 on the most confident hand: index/middle/ring/pinky up when
   |tip - wrist| > |PIP - wrist| (tips 8,12,16,20; PIPs 6,10,14,18; wrist 0); thumb up when
   |tip(4) - pinky MCP(17)| > |IP(3) - pinky MCP(17)| (rotation and handedness invariant).
   No hand = wrong.
d. Selfie segmentation, model_selection 0 (general, 256x256) and 1 (landscape, 144x256): mask > 0.5
   = person, at source size, against person_seg/val/masks/*.png (0 bg, 1 person). Per image person
   IoU and mIoU = mean(bg IoU, person IoU), averaged over images, plus pooled-pixel person IoU over
   the set. An empty union counts as IoU 1.
e. Emotions: MediaPipe has no expression model -> "-".
f. Latency: median wall time of ``.process()`` only (RGB numpy in, no decode), after 3 warm-up
   calls, single process: a dedicated pass of 5 repeats over hands_webcam/val (800x600) for Hands
   (thr 0.5) and over person_seg/val for Selfie segmentation. First-pass per-source medians are
   also in the JSON.

Diagnostic (not a headline number): thumbs_hagrid_crops/val and fingers/val again with a grey border
of 50% of the longest side on every side (palm detector misses hands that fill the frame).
"""
import argparse
import glob
import json
import os
import platform
import time
import xml.etree.ElementTree as ET

import cv2
import mediapipe as mp
import numpy as np

IMG_EXT = (".jpg", ".jpeg", ".png")


def list_images(d):
    return sorted(p for p in glob.glob(os.path.join(d, "*")) if p.lower().endswith(IMG_EXT))


def class_folders(root):
    out = []
    for c in sorted(os.listdir(root)):
        if os.path.isdir(os.path.join(root, c)):
            out += [(p, c) for p in list_images(os.path.join(root, c))]
    return out


def read_rgb(path):
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_voc(xml_path):
    root = ET.parse(xml_path).getroot()
    boxes, difficult = [], []
    for obj in root.findall("object"):
        bb = obj.find("bndbox")
        boxes.append([float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
        d = obj.find("difficult")
        difficult.append(d is not None and d.text.strip() == "1")
    size = root.find("size")
    wh = (int(size.find("width").text), int(size.find("height").text)) if size is not None else None
    return np.array(boxes, float).reshape(-1, 4), np.array(difficult, bool), wh


# ---------------------------------------------------------------- hands
class HandRunner:
    """Caches Hands results per image path for one threshold."""

    def __init__(self, thr, max_hands, pad=0.0):
        self.thr, self.pad = thr, pad
        self.hands = mp.solutions.hands.Hands(
            static_image_mode=True, max_num_hands=max_hands, model_complexity=1,
            min_detection_confidence=thr, min_tracking_confidence=thr)
        self.cache, self.times = {}, {}
        warm = np.zeros((480, 640, 3), np.uint8)
        for _ in range(3):
            self.hands.process(warm)

    def __call__(self, path, source):
        if path in self.cache:
            return self.cache[path]
        rgb = read_rgb(path)
        if self.pad:  # diagnostic only: grey border of pad x longest side on every side
            b = int(round(self.pad * max(rgb.shape[:2])))
            rgb = cv2.copyMakeBorder(rgb, b, b, b, b, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        h, w = rgb.shape[:2]
        t0 = time.perf_counter()
        res = self.hands.process(rgb)
        dt = (time.perf_counter() - t0) * 1e3
        self.times.setdefault(source, []).append(dt)
        out = []
        if res.multi_hand_landmarks:
            for lms, hd in zip(res.multi_hand_landmarks, res.multi_handedness):
                xy = np.array([[lm.x * w, lm.y * h] for lm in lms.landmark])
                c = hd.classification[0]
                out.append({"score": float(c.score), "label": c.label, "xy": xy})
        self.cache[path] = (out, (w, h))
        return self.cache[path]


def hand_box(xy, wh, margin):
    x0, y0 = xy.min(0)
    x1, y1 = xy.max(0)
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    w, h = wh
    return [max(0.0, x0 - mx), max(0.0, y0 - my), min(float(w), x1 + mx), min(float(h), y1 + my)]


def iou_1n(b, gts):
    ix0, iy0 = np.maximum(b[0], gts[:, 0]), np.maximum(b[1], gts[:, 1])
    ix1, iy1 = np.minimum(b[2], gts[:, 2]), np.minimum(b[3], gts[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    a = (b[2] - b[0]) * (b[3] - b[1])
    ag = (gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1])
    return inter / np.maximum(a + ag - inter, 1e-9)


def voc_ap(dets, gts, iou_thr=0.5):
    """dets: list of (img_id, score, box); gts: {img_id: (boxes, difficult)}.
    VOC2010+ all-point interpolated AP."""
    npos = int(sum((~d).sum() for _, d in gts.values()))
    used = {k: np.zeros(len(v[0]), bool) for k, v in gts.items()}
    dets = sorted(dets, key=lambda d: -d[1])
    tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
    for i, (img, _, box) in enumerate(dets):
        g, diff = gts[img]
        if len(g) == 0:
            fp[i] = 1
            continue
        ious = iou_1n(np.array(box), g)
        j = int(np.argmax(ious))
        if ious[j] >= iou_thr:
            if diff[j]:
                continue  # ignored
            if not used[img][j]:
                tp[i], used[img][j] = 1, True
            else:
                fp[i] = 1
        else:
            fp[i] = 1
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    rec = ctp / max(npos, 1)
    prec = ctp / np.maximum(ctp + cfp, 1e-9)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    ap = float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
    ntp, nfp = int(tp.sum()), int(fp.sum())
    return {"AP50": ap, "recall": ntp / max(npos, 1), "precision": ntp / max(ntp + nfp, 1),
            "n_gt": npos, "n_det": len(dets), "tp": ntp, "fp": nfp}


def detection_items(data, source):
    items = class_folders(os.path.join(data, source))  # images in class sub-folders
    out = []
    for p, _ in items:
        x = os.path.splitext(p)[0] + ".xml"
        if os.path.exists(x):
            out.append((p, x))
    return out


def eval_detection(runner, data, source, margins):
    items = detection_items(data, source)
    gts, raw, size_mismatch = {}, {}, 0
    for p, x in items:
        boxes, diff, wh_xml = read_voc(x)
        hands, wh = runner(p, source)
        if wh_xml is not None and tuple(wh_xml) != tuple(wh):
            size_mismatch += 1
        gts[p] = (boxes, diff)
        raw[p] = (hands, wh)
    res = {"n_images": len(items), "xml_size_mismatch": size_mismatch}
    for m in margins:
        dets = [(p, hd["score"], hand_box(hd["xy"], wh, m)) for p, (hs, wh) in raw.items() for hd in hs]
        res[f"margin_{m:.2f}"] = voc_ap(dets, gts)
    return res


def best_hand(hands):
    return max(hands, key=lambda h: h["score"]) if hands else None


def thumb_rule(xy):
    dy = xy[4, 1] - xy[2, 1]
    scale = np.linalg.norm(xy[0] - xy[9]) + 1e-9
    return ("thumbs_up" if dy < 0 else "thumbs_down"), abs(dy) >= 0.1 * scale


def finger_count(xy):
    def d(a, b):
        return float(np.linalg.norm(xy[a] - xy[b]))

    n = sum(d(t, 0) > d(p, 0) for t, p in ((8, 6), (12, 10), (16, 14), (20, 18)))
    n += d(4, 17) > d(3, 17)
    return int(n)


def eval_classify(runner, data, source, kind):
    items = class_folders(os.path.join(data, source))
    classes = sorted({c for _, c in items})
    per = {c: [0, 0] for c in classes}
    correct = no_hand = unclear = 0
    confusion = {}
    for p, c in items:
        hands, _ = runner(p, source)
        h = best_hand(hands)
        per[c][1] += 1
        if h is None:
            no_hand += 1
            pred = "none"
        elif kind == "thumbs":
            pred, clear = thumb_rule(h["xy"])
            unclear += not clear
        else:
            pred = str(finger_count(h["xy"]))
        confusion.setdefault(c, {}).setdefault(pred, 0)
        confusion[c][pred] += 1
        if pred == c:
            correct += 1
            per[c][0] += 1
    out = {"n_images": len(items), "correct": correct, "accuracy": correct / max(len(items), 1),
           "no_hand": no_hand,
           "per_class_recall": {c: {"correct": a, "n": n, "recall": a / max(n, 1)} for c, (a, n) in per.items()},
           "confusion_true_to_pred": confusion}
    if kind == "thumbs":
        out["unclear_margin_lt_0.1_scale"] = unclear
    return out


# ---------------------------------------------------------------- segmentation
def eval_seg(data, model_selection):
    seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model_selection)
    warm = np.zeros((480, 640, 3), np.uint8)
    for _ in range(3):
        seg.process(warm)
    imgs = list_images(os.path.join(data, "person_seg/val/images"))
    piou, miou = [], []
    inter_sum = union_sum = 0
    for p in imgs:
        mpath = os.path.join(data, "person_seg/val/masks", os.path.splitext(os.path.basename(p))[0] + ".png")
        gt = cv2.imread(mpath, cv2.IMREAD_GRAYSCALE)
        rgb = read_rgb(p)
        assert gt.shape == rgb.shape[:2], (p, gt.shape, rgb.shape)
        gt = gt > 0
        r = seg.process(rgb)
        pr = r.segmentation_mask > 0.5
        assert pr.shape == gt.shape
        ious = []
        for a, b in ((pr, gt), (~pr, ~gt)):
            i, u = np.logical_and(a, b).sum(), np.logical_or(a, b).sum()
            ious.append(1.0 if u == 0 else i / u)
        piou.append(ious[0])
        miou.append(np.mean(ious))
        inter_sum += np.logical_and(pr, gt).sum()
        union_sum += np.logical_or(pr, gt).sum()
    lat = latency_pass(seg, imgs)
    seg.close()
    return {"n_images": len(imgs), "person_iou_mean": float(np.mean(piou)),
            "miou_mean": float(np.mean(miou)), "pooled_person_iou": float(inter_sum / max(union_sum, 1)),
            "person_iou_per_image": [round(float(v), 4) for v in piou],
            "latency_ms_median": lat["median_ms"], "latency": lat}


def latency_pass(solution, paths, repeats=5):
    imgs = [read_rgb(p) for p in paths]
    ts = []
    for _ in range(repeats):
        for im in imgs:
            t0 = time.perf_counter()
            solution.process(im)
            ts.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": float(np.median(ts)), "p90_ms": float(np.percentile(ts, 90)),
            "n_calls": len(ts), "n_images": len(imgs)}


# ---------------------------------------------------------------- check images
def draw_checks(runner, data, out_dir, n=3, margin=0.10):
    os.makedirs(out_dir, exist_ok=True)
    items = detection_items(data, "hands_webcam/val")
    step = max(1, len(items) // n)
    written = []
    for p, x in items[::step][:n]:
        bgr = cv2.imread(p)
        boxes, _, _ = read_voc(x)
        hands, wh = runner(p, "hands_webcam/val")
        for b in boxes:
            cv2.rectangle(bgr, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 255, 0), 3)
        for hd in hands:
            b = hand_box(hd["xy"], wh, margin)
            cv2.rectangle(bgr, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 0, 255), 2)
            for (px, py) in hd["xy"]:
                cv2.circle(bgr, (int(px), int(py)), 3, (255, 0, 0), -1)
            cv2.putText(bgr, f"{hd['label']} {hd['score']:.2f} n={finger_count(hd['xy'])}",
                        (int(b[0]), max(15, int(b[1]) - 5)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2)
        o = os.path.join(out_dir, os.path.basename(p).replace(".jpg", ".png"))
        cv2.imwrite(o, bgr)
        written.append(o)
    return written


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data", help="data root (default: relative to the repo root)")
    ap.add_argument("--json", required=True, help="output JSON path")
    ap.add_argument("--md", default=None, help="optional markdown output path")
    ap.add_argument("--check-dir", default=None, help="draw MP boxes (red) vs xml (green) on 3 hands_webcam images")
    ap.add_argument("--thresholds", default="0.5,0.3")
    ap.add_argument("--max-hands", type=int, default=4)
    args = ap.parse_args()

    thrs = [float(t) for t in args.thresholds.split(",")]
    margins = [0.0, 0.10, 0.20]
    det_sources = ["hands_webcam/val", "fingers_hagrid/val"]
    thumb_sources = ["thumbs/val", "thumbs_hagrid/val", "thumbs_hagrid_crops/val"]
    count_sources = ["hands_webcam/val", "fingers_hagrid/val", "fingers/val"]

    R = {"versions": {"mediapipe": mp.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
                      "python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
         "settings": {"max_num_hands": args.max_hands, "model_complexity": 1, "static_image_mode": True,
                      "thresholds": thrs, "margins": margins, "headline_margin": 0.10},
         "hands": {}, "emotions": "-"}
    for t in thrs:
        run = HandRunner(t, args.max_hands)
        res = {"detection": {s: eval_detection(run, args.data, s, margins) for s in det_sources},
               "thumbs": {s: eval_classify(run, args.data, s, "thumbs") for s in thumb_sources},
               "finger_count": {s: eval_classify(run, args.data, s, "count") for s in count_sources}}
        allt = [v for ts in run.times.values() for v in ts]
        res["latency_ms_median"] = {s: {"median": float(np.median(v)), "n": len(v)} for s, v in run.times.items()}
        res["latency_ms_median"]["all"] = {"median": float(np.median(allt)), "n": len(allt)}
        if args.check_dir and t == thrs[0]:
            R["check_images"] = draw_checks(run, args.data, args.check_dir)
        if t == thrs[0]:
            webcam = [p for p, _ in class_folders(os.path.join(args.data, "hands_webcam/val"))]
            res["latency_dedicated"] = latency_pass(run.hands, webcam)
        run.hands.close()
        R["hands"][f"thr_{t:.1f}"] = res
    run = HandRunner(thrs[0], args.max_hands, pad=0.5)
    R[f"diagnostic_padded_50pct_thr_{thrs[0]:.1f}"] = {
        "thumbs_hagrid_crops/val": eval_classify(run, args.data, "thumbs_hagrid_crops/val", "thumbs"),
        "fingers/val": eval_classify(run, args.data, "fingers/val", "count")}
    run.hands.close()
    R["selfie_segmentation"] = {f"model_selection_{m}": eval_seg(args.data, m) for m in (0, 1)}

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(R, f, indent=1)
    md = to_markdown(R, thrs)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")


def to_markdown(R, thrs):
    v = R["versions"]
    pad = " - |" * (len(thrs) - 1)
    L = [f"MediaPipe {v['mediapipe']} (legacy solutions, bundled models), numpy {v['numpy']}, "
         f"opencv {v['opencv']}; val splits", "",
         "| task | source | n img | metric | " + " | ".join(f"thr {t:.1f}" for t in thrs) + " |",
         "|---|---|---|---|" + "---|" * len(thrs)]
    H = [R["hands"][f"thr_{t:.1f}"] for t in thrs]
    for s in H[0]["detection"]:
        n = H[0]["detection"][s]["n_images"]
        ngt = H[0]["detection"][s]["margin_0.00"]["n_gt"]
        for m in ("0.10", "0.00", "0.20"):
            aps = " | ".join(f"{h['detection'][s]['margin_' + m]['AP50']:.3f}" for h in H)
            L.append(f"| hand det | {s} ({ngt} boxes) | {n} | AP50 margin {m} | {aps} |")
        rp = [h["detection"][s]["margin_0.10"] for h in H]
        rp = " | ".join(f"{d['recall']:.3f} / {d['precision']:.3f} ({d['n_det']} det)" for d in rp)
        L.append(f"| hand det | {s} | {n} | recall / precision (m 0.10) | {rp} |")
    for task in ("thumbs", "finger_count"):
        for s in H[0][task]:
            n = H[0][task][s]["n_images"]
            acc = " | ".join(f"{h[task][s]['accuracy']:.3f} ({h[task][s]['correct']}, {h[task][s]['no_hand']})"
                             for h in H)
            L.append(f"| {task} | {s} | {n} | accuracy (correct, no hand) | {acc} |")
            pcr = [h[task][s]["per_class_recall"] for h in H]
            rec = " | ".join(", ".join(f"{c} {d['correct']}/{d['n']}" for c, d in r.items()) for r in pcr)
            L.append(f"| {task} | {s} | {n} | per-class recall | {rec} |")
    L.append("| emotions | - | - | - | " + " | ".join("-" for _ in thrs) + " |")
    lat = " | ".join(f"{h['latency_ms_median']['all']['median']:.1f}" for h in H)
    L.append(f"| hands latency | first pass, all Hands images above | {H[0]['latency_ms_median']['all']['n']} "
             f"| median ms/img | {lat} |")
    ld = H[0]["latency_dedicated"]
    L.append(f"| hands latency | hands_webcam/val 800x600, {ld['n_calls']} calls | {ld['n_images']} "
             f"| median ms/img (p90) | {ld['median_ms']:.1f} ({ld['p90_ms']:.1f}) |{pad}")
    for s, d in R[f"diagnostic_padded_50pct_thr_{thrs[0]:.1f}"].items():
        L.append(f"| diag: padded 50% | {s} | {d['n_images']} | accuracy (correct, no hand) "
                 f"| {d['accuracy']:.3f} ({d['correct']}, {d['no_hand']}) |{pad}")
    L += ["", "| selfie segmentation | n img | person IoU (mean/img) | mIoU (bg,person; mean/img) "
          "| pooled person IoU | median ms/img |", "|---|---|---|---|---|---|"]
    for k, s in R["selfie_segmentation"].items():
        L.append(f"| {k} | {s['n_images']} | {s['person_iou_mean']:.3f} | {s['miou_mean']:.3f} "
                 f"| {s['pooled_person_iou']:.3f} | {s['latency_ms_median']:.1f} |")
    return "\n".join(L)

if __name__ == "__main__":
    main()

"""Benchmark: a model's accuracy on labelled photos under changes it may meet in another room.

    python -m edgevision.camera.bench_robustness --model models/thumbs.onnx ../shared/data/thumbs/val
    python -m edgevision.camera.bench_robustness --model models/hands.onnx --rename '*-hand:hand' \
        --then models/fingers.onnx ../shared/data/hands_webcam/val

Detectors (boxes from VOC/YOLO labels) get AP50 per change instead, with the boxes moved by the
geometric ones, plus zoomed-out frames (the photo shrunk to 50% or 33% in the middle of a grey
frame: the object smaller, as in a wider room); with ``--then``, also the chain's answer per image.

Each photo (its folder names its label) is shown as it is and after: a mirror, tight and
off-centre crops (80% and 60% of each side), grey, darker, brighter, blurred and colour-tinted.
It prints the accuracy per change and overall. A small validation set says little about other
rooms and cameras; this says a little more. It is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import cv2
import numpy as np

from ..deploy.errors import tool_main
from ..deploy.images import collect_images, read_image
from ..deploy.ops import LETTERBOX_FILL
from ..deploy.runner import Runner, RunnerOptions


def _crop(fraction: float, where: str) -> Callable[[np.ndarray], np.ndarray]:
    def crop(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        ch, cw = int(h * fraction), int(w * fraction)
        y, x = {"centre": ((h - ch) // 2, (w - cw) // 2), "top-left": (0, 0), "bottom-right": (h - ch, w - cw)}[where]
        return image[y : y + ch, x : x + cw]

    return crop


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


CHANGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "original": lambda im: im,
    "mirror": lambda im: im[:, ::-1],
    **{f"crop {int(f * 100)}% {w}": _crop(f, w) for f in (0.8, 0.6) for w in ("centre", "top-left", "bottom-right")},
    "grey": _grey,
    "dark": lambda im: (im * 0.5).astype(np.uint8),
    "bright": lambda im: np.clip(im * 1.5 + 20, 0, 255).astype(np.uint8),
    "blur": lambda im: cv2.GaussianBlur(im, (9, 9), 3),
    "tint": lambda im: np.clip(im.astype(np.int16) + np.array([30, -10, -30]), 0, 255).astype(np.uint8),
    # a FER2013-like face: grey, 48 x 48 pixels, scaled back up by the runtime's own resize
    "grey 48 px": lambda im: _grey(cv2.resize(im, (48, 48), interpolation=cv2.INTER_AREA)),
    "small 32 px": lambda im: cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA),
}


def robustness(runner: Runner, paths: list, per_class: dict | None = None) -> dict[str, float]:
    """Accuracy under each change; ``per_class`` (when given) is filled with each change's recall per label."""
    labels = set(runner.spec.labels)
    hits: dict[str, list[bool]] = {name: [] for name in CHANGES}
    truth: list[str] = []
    for path in paths:
        image = read_image(path)
        if image is None or path.parent.name not in labels:
            continue
        truth.append(path.parent.name)
        changed = [np.ascontiguousarray(change(image)) for change in CHANGES.values()]
        results, _ = runner.infer(changed)
        for name, result in zip(CHANGES, results):
            hits[name].append(result.label == path.parent.name)
    if per_class is not None:
        for name, v in hits.items():
            per_class[name] = {label: float(np.mean([h for h, t in zip(v, truth) if t == label]))
                               for label in sorted(set(truth))}
    return {name: float(np.mean(v)) for name, v in hits.items() if v}


def _zoom_out(fraction: float):
    def change(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        small = cv2.resize(image, (round(w * fraction), round(h * fraction)), interpolation=cv2.INTER_AREA)
        out = np.full_like(image, LETTERBOX_FILL)
        y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
        out[y : y + small.shape[0], x : x + small.shape[1]] = small
        sx, sy = small.shape[1] / w, small.shape[0] / h
        return out, boxes * np.float32([sx, sy, sx, sy]) + np.float32([x, y, x, y])

    return change


def _mirror(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = image.shape[1]
    return image[:, ::-1], np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)


BOX_CHANGES = {
    "original": lambda im, b: (im, b),
    "mirror": _mirror,
    "zoom out 50%": _zoom_out(0.5),
    "zoom out 33%": _zoom_out(1 / 3),
    **{name: (lambda f: lambda im, b: (f(im), b))(CHANGES[name])
       for name in ("grey", "dark", "bright", "blur", "tint")},
}


def box_robustness(runner, folders: list, rename: tuple[str, ...], chain=None) -> dict[str, dict]:
    """AP50 (``runner`` keeps scores down to 0.01) and, with a ``chain`` (at the model's own score
    threshold, as 'run' uses it), the share of images answered as their folder, per change."""
    from dataclasses import replace
    from pathlib import Path

    from ..deploy.boxdata import read_box_folder
    from ..deploy.tasks.detect import detection_metrics

    samples = [s for folder in folders for s in read_box_folder(Path(folder), runner.spec.labels, rename)[0]]
    out = {}
    for name, change in BOX_CHANGES.items():
        preds, truths, right = [], [], []
        for s in samples:
            image, boxes = change(read_image(s.path), s.xyxy)
            image = np.ascontiguousarray(image)
            preds.append(runner.infer([image])[0][0])
            truths.append(replace(s, xyxy=np.asarray(boxes, np.float32)))
            if chain is not None:
                right.append(chain(image).top_label() == s.path.parent.name)
        m = detection_metrics(preds, truths, runner.spec.labels, operating_score=runner.spec.score_threshold)
        out[name] = {"ap50": m["map50"], "recall": m["recall"], **({"chain": float(np.mean(right))} if right else {})}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("paths", nargs="+", help="folders whose sub-folders are named like the labels")
    parser.add_argument("--then", help="detectors: chain this classifier (answers scored by folder name)")
    parser.add_argument("--rename", action="append", default=[], help="detectors: PATTERN:CLASS for box names")
    args = parser.parse_args(argv)
    runner = Runner(args.model, RunnerOptions(providers="cpu", score_threshold=0.01))
    if runner.spec.kind == "detect":
        chain = None
        if args.then:
            from ..deploy.chain import ChainRunner

            plain = RunnerOptions(providers="cpu")
            chain = ChainRunner(Runner(args.model, plain), Runner(args.then, plain))
        scores = box_robustness(runner, args.paths, tuple(args.rename), chain)
        for name, v in scores.items():
            chain = f"  chain {v['chain']:6.1%}" if "chain" in v else ""
            print(f"{name:<22} AP50 {v['ap50']:.4f}  recall {v['recall']:6.1%}{chain}")
        return 0
    if runner.spec.kind != "classify":
        parser.error("give a classify or detect model")
    paths = collect_images(args.paths)
    recall: dict = {}
    scores = robustness(runner, paths, recall)
    if not scores:
        parser.error("no image lies in a folder named like one of the model's labels")
    for name, value in scores.items():
        print(f"{name:<22} {value:6.1%}   recall " + ", ".join(f"{k} {v:.1%}" for k, v in recall[name].items()))
    overall = float(np.mean(list(scores.values())))
    print(f"{'all changes':<22} {overall:6.1%}  ({len(paths)} photos, {len(scores)} versions each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(tool_main(main, "bench_robustness"))

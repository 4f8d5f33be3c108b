"""Benchmark: a classifier's accuracy on labelled photos under changes it may meet in another room.

    python -m edgevision.deploy.bench_robustness --model models/thumbs.onnx ../shared/data/thumbs/val

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

from ..camera.predict import collect_images
from ..camera.sources import read_image
from .runner import Runner, RunnerOptions


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
}


def robustness(runner: Runner, paths: list) -> dict[str, float]:
    labels = set(runner.spec.labels)
    hits: dict[str, list[bool]] = {name: [] for name in CHANGES}
    for path in paths:
        image = read_image(path)
        if image is None or path.parent.name not in labels:
            continue
        changed = [np.ascontiguousarray(change(image)) for change in CHANGES.values()]
        results, _ = runner.infer(changed)
        for name, result in zip(CHANGES, results):
            hits[name].append(result.label == path.parent.name)
    return {name: float(np.mean(v)) for name, v in hits.items() if v}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("paths", nargs="+", help="folders whose sub-folders are named like the labels")
    args = parser.parse_args(argv)
    runner = Runner(args.model, RunnerOptions(providers="cpu"))
    if runner.spec.kind != "classify":
        parser.error("give a classify model")
    paths = collect_images(args.paths)
    scores = robustness(runner, paths)
    if not scores:
        parser.error("no image lies in a folder named like one of the model's labels")
    for name, value in scores.items():
        print(f"{name:<22} {value:6.1%}")
    overall = float(np.mean(list(scores.values())))
    print(f"{'all changes':<22} {overall:6.1%}  ({len(paths)} photos, {len(scores)} versions each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Memory of training on a large folder: ``python -m edgevision.training.bench_memory``.

Makes a synthetic folder of small JPEGs (10,000 by default, 160x120) in a task's layout
(``--task``: classify, four colour classes; keypoints, images/ + labels.csv of a dot; segment,
images/ + masks/ of a disc; detect, JPEGs + VOC XML of a rectangle), runs ``edgevision train`` on
it in fast and finetune mode (one epoch) as a child process, samples the child's resident memory
(VmRSS, Linux) every second from a thread, and prints a table: peak RSS, peak anonymous RSS
(RssAnon: RSS less the pages of files, which the kernel can drop), RSS when the data was
scanned, RSS at the start, middle and end of the pass that reads every image (fast: the feature
pass, or for segment and detect the decoder/head epoch on the frozen backbone; finetune: the
fine-tuning epoch) and images per second of that pass.

``--code DIR`` runs the ``edgevision`` package found in DIR instead (for example an older version's
files, laid out as the installed package), for a before/after comparison on the same folder.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from ..deploy.errors import tool_main

COLOURS = {"red": (40, 40, 200), "green": (40, 180, 40), "blue": (200, 60, 40), "grey": (128, 128, 128)}  # BGR
SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared/weights/mobilenet_v2_1.0_224_imagenet_notop.weights.h5"
TASKS = ("classify", "keypoints", "segment", "detect")
MARKER = ".bench_memory"  # in a folder this benchmark made: its task and image count
TASK_FLAGS = {"classify": [], "keypoints": ["--task", "keypoints", "--points", "dot"],
              "segment": ["--task", "segment"], "detect": ["--task", "detect", "--det-classes", "box"]}
VOC = ("<annotation><size><width>160</width><height>120</height></size><object><name>box</name><bndbox>"
       "<xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object></annotation>")


def _photo(rng: np.random.Generator, bgr) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 160x120 frame: a colour, noise and a random 40-pixel square (its x0, y0, x1, y1)."""
    image = np.clip(rng.normal(bgr, 40, size=(120, 160, 3)), 0, 255).astype(np.uint8)
    x, y = int(rng.integers(0, 120)), int(rng.integers(0, 80))
    cv2.rectangle(image, (x, y), (x + 40, y + 40), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return image, (x, y, x + 41, y + 41)


def make_folder(root: Path, count: int, seed: int = 0, task: str = "classify") -> Path:
    """``count`` JPEGs of 160x120 in ``task``'s layout (see the module's text)."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    folders = names if task == "classify" else ["images", "masks"] if task == "segment" else ["images"]
    for name in folders if task != "detect" else ["."]:
        (root / name).mkdir(parents=True, exist_ok=True)
    rows = ["file,dot_x,dot_y"]
    for i in range(count):
        image, (x0, y0, x1, y1) = _photo(rng, COLOURS[names[i % len(names)]])
        if task == "classify":
            cv2.imwrite(str(root / names[i % len(names)] / f"{i:05d}.jpg"), image)
        elif task == "keypoints":
            cv2.imwrite(str(root / "images" / f"{i:05d}.jpg"), image)
            rows.append(f"{i:05d}.jpg,{(x0 + x1) / 2},{(y0 + y1) / 2}")  # the square's centre
        elif task == "segment":
            cv2.imwrite(str(root / "images" / f"{i:05d}.jpg"), image)
            mask = np.zeros((120, 160), np.uint8)
            mask[y0:y1, x0:x1] = 1
            cv2.imwrite(str(root / "masks" / f"{i:05d}.png"), mask)
        else:
            cv2.imwrite(str(root / f"{i:05d}.jpg"), image)
            (root / f"{i:05d}.xml").write_text(VOC.format(x0 + 1, y0 + 1, x1, y1))
    if task == "keypoints":
        (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def rss_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, RssAnon) in MB: all resident pages, and those that are not a file's (a file's pages,
    such as the fast heads' features in a file, are dropped by the kernel when memory is short)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["RssAnon"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        return None


def run_once(data: Path, mode: str, args: argparse.Namespace, runs: Path) -> dict:
    """One training run in a child process: its log lines and RSS samples, each with a time."""
    flags = ["--mode", mode, "--input-size", str(args.input_size), "--weights", args.weights,
             "--runs-dir", str(runs), "--batch-size", str(args.batch_size), "--name", f"bench-{mode}",
             *TASK_FLAGS[args.task]]
    head_epochs = "5" if args.task in ("classify", "keypoints") else "1"  # segment, detect: an epoch of images
    flags += ["--head-epochs", head_epochs] if mode == "fast" else ["--epochs", "1", "--head-epochs", "1",
                                                                     "--patience", "0"]
    if args.cache:
        flags += ["--cache", str(args.cache)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if args.code:
        env["PYTHONPATH"] = os.pathsep.join([str(args.code), env.get("PYTHONPATH", "")])
    t0 = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "edgevision.cli", "train", str(data), *flags],
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    samples: list[tuple[float, float, float]] = []  # (time, RSS, anonymous RSS)
    lines: list[tuple[float, str]] = []

    def sample() -> None:
        while child.poll() is None:
            value = rss_mb(child.pid)
            if value is not None:
                samples.append((time.monotonic() - t0, *value))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in child.stderr:
        lines.append((time.monotonic() - t0, line.rstrip()))
    child.wait()
    sampler.join()
    if child.returncode:
        tail = "\n".join(text for _, text in lines[-15:])
        raise SystemExit(f"{mode} training failed (exit {child.returncode}):\n{tail}")
    return {"mode": mode, "samples": samples, "lines": lines, "seconds": time.monotonic() - t0}


def _when(lines: list[tuple[float, str]], pattern: str) -> tuple[float, re.Match] | None:
    for t, text in lines:
        found = re.search(pattern, text)
        if found:
            return t, found
    return None


def _rss_at(samples: list[tuple[float, float, float]], t: float) -> float:
    return min(samples, key=lambda s: abs(s[0] - t))[1]


def summarise(run: dict) -> dict:
    lines, samples = run["lines"], run["samples"]
    scanned = _when(lines, r"(\d+) train / (\d+) val images")
    if scanned is None:
        raise SystemExit("the training log has no 'N train / M val images' line")
    n_train, n_val = int(scanned[1][1]), int(scanned[1][2])
    if run["mode"] == "fast" and _when(lines, r"features: \d+ train"):
        start, end = scanned[0], _when(lines, r"features: \d+ train, \d+ val in ([\d.]+) s")
        images, seconds = n_train + n_val, float(end[1][1])
    elif run["mode"] == "fast":  # segment and detect: one epoch of the head on the frozen backbone
        start, end = scanned[0], _when(lines, r"(?:decoder|head) epoch +1/1 .* ([\d.]+) s$")
        images, seconds = n_train, float(end[1][1])
    else:
        start, end = _when(lines, r"fine-tuning the top")[0], _when(lines, r"finetune epoch +1/1 .* ([\d.]+) s$")
        images, seconds = n_train, float(end[1][1])
    return {
        "mode": run["mode"], "images": n_train + n_val, "peak": max(s[1] for s in samples),
        "peak_anon": max(s[2] for s in samples),
        "scanned": _rss_at(samples, scanned[0]), "start": _rss_at(samples, start),
        "middle": _rss_at(samples, (start + end[0]) / 2), "end": _rss_at(samples, end[0]),
        "per_s": images / max(seconds, 1e-9), "wall": run["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10_000, help="synthetic images (default 10000)")
    p.add_argument("--task", choices=TASKS, default="classify", help="the data layout and trainer (default classify)")
    p.add_argument("--folder", type=Path, help="make (or reuse) the synthetic folder here (default: a temp folder)")
    p.add_argument("--input-size", type=int, default=96, help="model input side (default 96)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--weights", default=str(SHARED_WEIGHTS), help="MobileNetV2 .h5 weights (default: the shared ones)")
    p.add_argument("--modes", default="fast,finetune", help="comma-separated: fast, finetune")
    p.add_argument("--cache", type=Path, help="pass --cache DIR to training (the new pipeline only)")
    p.add_argument("--code", type=Path, help="run the edgevision package found in this folder (before/after)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgevision-bench-") as tmp:
        data = args.folder or Path(tmp) / "data"
        made_for, marker = f"{args.task} {args.images}\n", data / MARKER
        if not (marker.is_file() and marker.read_text() == made_for):  # else: made by an earlier run, reused
            if data.is_dir() and any(data.iterdir()):
                raise SystemExit(f"{data} is not empty and was not made by this benchmark for --task {args.task} "
                                 f"--images {args.images}: give a new or empty --folder")
            t0 = time.perf_counter()
            make_folder(data, args.images, task=args.task)
            marker.write_text(made_for)
            print(f"made {args.images} JPEGs (160x120, {args.task}) in {data} in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
        rows = []
        for mode in args.modes.split(","):
            print(f"training {mode} on {data} ...", file=sys.stderr, flush=True)
            rows.append(summarise(run_once(data, mode, args, Path(tmp) / "runs")))
    code = args.code or "this checkout"
    print(f"\n{args.task}: {args.images} images, input {args.input_size} px, batch {args.batch_size}, code: {code}")
    print("| mode | images | peak RSS MB | peak anon MB | after scan/load MB | pass start MB | middle MB | end MB "
          "| images/s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['images']} | {r['peak']:.0f} | {r['peak_anon']:.0f} | {r['scanned']:.0f} | "
              f"{r['start']:.0f} | {r['middle']:.0f} | {r['end']:.0f} | {r['per_s']:.0f} | {r['wall']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(tool_main(main, "bench_memory"))

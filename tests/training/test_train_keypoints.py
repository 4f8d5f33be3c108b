"""A tiny keypoint model learns where a bright dot is, exports, and the runner finds it in source pixels."""

import csv
import json

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")
pytestmark = pytest.mark.train

from conftest import export_in_fresh_process
from edgevision.deploy.runner import Runner, RunnerOptions
from edgevision.training.options import make_config
from edgevision.training.tasks.keypoints import train as train_keypoints

H, W = 48, 72  # non-square frames


def dot_frame(x: float, y: float) -> np.ndarray:
    image = np.full((H, W, 3), 30, np.uint8)
    cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    return image


def dot_dataset(root, n=60, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "dot_x", "dot_y"])
        for i in range(n):
            x, y = rng.uniform(8, W - 8), rng.uniform(8, H - 8)
            cv2.imwrite(str(root / "images" / f"{i}.png"), dot_frame(x, y))
            writer.writerow([f"{i}.png", f"{x:.1f}", f"{y:.1f}"])
    return root


def test_a_tiny_heatmap_model_learns_the_dot_and_the_runner_finds_it_in_source_pixels(tmp_path):
    data = dot_dataset(tmp_path / "dots")
    config = make_config(dict(data=str(data), task="keypoints", points=("dot",), head="heatmap", backbone="tiny",
                         weights="none", mode="finetune", input_size=32, epochs=40, lr=3e-3, batch_size=8,
                         rotation_deg=0.0, zoom=0.0, translate=0.1, color=0.0, grayscale=0.0, hflip=True,
                         patience=0, runs_dir=str(tmp_path / "runs"), seed=1, flip_average=True))
    lines = []
    run_dir = train_keypoints(config, lines.append)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["normalised_by"] == "diagonal" and metrics["flip_average"]
    assert metrics["pixel_error_mean"] < 6.0, lines[-4:]  # a guess at the centre is off by about 20 px
    out = tmp_path / "dot.onnx"
    # Export in a fresh process, as a user does: the saved model's custom layers must load there.
    stdout = export_in_fresh_process(run_dir, out)
    assert "parity PASSED" in stdout
    report = json.loads((run_dir / "export.json").read_text())
    assert report["onnx_pixel_error_mean"] < 6.0
    runner = Runner(out, RunnerOptions(providers="cpu"))
    assert runner.spec.kind == "keypoints" and runner.spec.labels == ("dot",)
    (found,) = runner.infer([dot_frame(55.0, 12.0)])[0]
    assert np.linalg.norm(found.xy[0] - (55.0, 12.0)) < 8.0
    card = out.with_suffix(".md").read_text()
    assert "Validation NME (onnxruntime, val/): **" in card and "image diagonal" in card

"""The detection pipeline end to end on synthetic data: a tiny detector learns to find rectangles
on noise, exports with parity (in a fresh process), and the runner returns source-pixel boxes."""

import json

import cv2
import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")
pytestmark = pytest.mark.train

from conftest import export_in_fresh_process
from edgevision.deploy.runner import Runner, RunnerOptions
from edgevision.training.options import make_config
from edgevision.training.tasks.detect import train as train_detect
from taskdata import count_reads, rectangles, streamed_every_epoch


def test_a_tiny_detector_finds_rectangles_on_noise_and_exports_with_parity(tmp_path, monkeypatch):
    rectangles(tmp_path / "rects" / "train", 48, seed=0)
    _, val_boxes = rectangles(tmp_path / "rects" / "val", 12, seed=1)
    config = make_config(dict(data=str(tmp_path / "rects"), task="detect", det_classes=("box",), backbone="tiny",
                         weights="none", mode="finetune", input_size=64, epochs=40, lr=3e-3, batch_size=8,
                         patience=0, zoom=0.2, translate=0.1, color=0.0, grayscale=0.0,
                         runs_dir=str(tmp_path / "runs"), seed=0))
    reads = count_reads(monkeypatch)
    run_dir = train_detect(config, lambda _: None)
    assert streamed_every_epoch(reads, run_dir, config.epochs)  # from the files, never all in memory
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["map50"] > 0.8, metrics  # random boxes score ~0
    out = tmp_path / "rects.onnx"
    stdout = export_in_fresh_process(run_dir, out)
    assert "parity PASSED" in stdout and "AP50" in stdout
    runner = Runner(out, RunnerOptions(providers="cpu"))
    assert runner.spec.kind == "detect" and runner.spec.resize == "letterbox"
    # A non-square frame: the best box must land on the rectangle in source pixels.
    frame = cv2.imread(str(tmp_path / "rects" / "val" / "0.png"))
    big = cv2.resize(frame, (frame.shape[1] * 3, frame.shape[0] * 3), interpolation=cv2.INTER_NEAREST)
    found = runner(big)
    assert len(found) >= 1
    x0, y0, x1, y1 = (3 * v for v in val_boxes[0])
    bx = found.xyxy[int(found.score.argmax())]
    inter = max(0, min(x1, bx[2]) - max(x0, bx[0])) * max(0, min(y1, bx[3]) - max(y0, bx[1]))
    union = (x1 - x0) * (y1 - y0) + (bx[2] - bx[0]) * (bx[3] - bx[1]) - inter
    assert inter / union > 0.5, (bx, (x0, y0, x1, y1))
    assert "Validation AP50 (onnxruntime, val/): **" in out.with_suffix(".md").read_text()

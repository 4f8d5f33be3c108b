"""A tiny keypoint model learns where a bright dot is, exports, and the runner finds it in source pixels."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")
pytestmark = pytest.mark.train

from conftest import export_in_fresh_process
from edgevision.deploy.runner import Runner, RunnerOptions
from edgevision.training.options import make_config
from edgevision.training.tasks.keypoints import train as train_keypoints
from taskdata import count_reads, dot_dataset, dot_frame, streamed_every_epoch


def test_a_tiny_heatmap_model_learns_the_dot_and_the_runner_finds_it_in_source_pixels(tmp_path, monkeypatch):
    data = dot_dataset(tmp_path / "dots")
    config = make_config(dict(data=str(data), task="keypoints", points=("dot",), head="heatmap", backbone="tiny",
                         weights="none", mode="finetune", input_size=32, epochs=40, lr=3e-3, batch_size=8,
                         rotation_deg=0.0, zoom=0.0, translate=0.1, color=0.0, grayscale=0.0, hflip=True,
                         patience=0, runs_dir=str(tmp_path / "runs"), seed=1, flip_average=True))
    lines, reads = [], count_reads(monkeypatch)
    run_dir = train_keypoints(config, lines.append)
    assert streamed_every_epoch(reads, run_dir, config.epochs)  # from the files, never all in memory
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

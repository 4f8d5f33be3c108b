"""``edgevision train --head knn|linear`` end to end, in a subprocess where TensorFlow cannot be imported:
features from a tiny ONNX backbone, the cache, the one ONNX file, predict on it, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tinymodels

# TensorFlow, Keras and tf2onnx made unimportable before edgevision's CLI starts
BLOCKED = """
import sys
class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'):
            raise ImportError('blocked for this test: ' + name)
        return None
sys.meta_path.insert(0, _NoTensorFlow())
from edgevision.cli import main
sys.exit(main(sys.argv[1:]))
"""


def edgevision(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, EDGEVISION_CACHE=str(cache))
    proc = subprocess.run([sys.executable, "-c", BLOCKED, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def setup(tmp_path):
    backbone = tinymodels.save_backbone(tmp_path / "bb.onnx")
    data = tmp_path / "data"
    tinymodels.colour_photos(data / "train", per_class=6)
    tinymodels.colour_photos(data / "val", per_class=3, seed=1)
    return tmp_path, backbone, data


def train(tmp_path, backbone, data, *extra):
    return edgevision("train", data, "--backbone-onnx", backbone, "--input-size", "32", "--runs-dir",
                      tmp_path / "runs", *extra, cache=tmp_path / "cache")


@pytest.mark.parametrize("head", ["knn", "linear"])
def test_train_a_numpy_head_without_tensorflow_then_predict_with_it(setup, head):
    tmp_path, backbone, data = setup
    out = tmp_path / "models" / f"{head}.onnx"
    proc = train(tmp_path, backbone, data, "--head", head, "--export", out)
    assert proc.returncode == 0, proc.stderr
    assert "val accuracy 1.0000" in proc.stderr and "parity on 9 validation images" in proc.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["head"] == head and metrics["accuracy"] == 1.0 and metrics["features"]["embedded"] == 27
    assert (run_dir / "model.onnx").is_file() and out.is_file() and out.with_suffix(".md").is_file()
    assert "fitted without TensorFlow" in out.with_suffix(".md").read_text()
    pred = edgevision("predict", "--model", out, data / "val", "--providers", "cpu", cache=tmp_path / "cache")
    assert pred.returncode == 0, pred.stderr
    lines = [json.loads(line) for line in pred.stdout.splitlines()]
    assert len(lines) == 9 and all(Path(x["file"]).parent.name == x["label"] for x in lines)
    assert "accuracy 1.0000 on the 9" in pred.stderr


def test_a_second_run_takes_every_feature_from_the_cache(setup):
    tmp_path, backbone, data = setup
    assert train(tmp_path, backbone, data, "--head", "knn").returncode == 0
    proc = train(tmp_path, backbone, data, "--head", "knn")
    assert proc.returncode == 0, proc.stderr
    assert "(0 embedded, 27 from the cache" in proc.stderr
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and json.loads((runs[1] / "metrics.json").read_text())["features"]["embedded"] == 0


def test_an_export_of_a_head_run_needs_no_tensorflow_and_never_overwrites(setup):
    tmp_path, backbone, data = setup
    assert train(tmp_path, backbone, data, "--head", "linear").returncode == 0
    run_dir = next((tmp_path / "runs").iterdir())
    out = tmp_path / "m.onnx"
    first = edgevision("export", run_dir, "--out", out, cache=tmp_path / "cache")
    assert first.returncode == 0, first.stderr
    again = edgevision("export", run_dir, "--out", out, cache=tmp_path / "cache")
    assert again.returncode == 2 and "exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def one_line_failure(proc: subprocess.CompletedProcess, words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and words in errors[0], proc.stderr


def test_bad_input_ends_in_one_line_and_leaves_no_run_folder(setup):
    tmp_path, backbone, data = setup
    one_line_failure(train(tmp_path, tmp_path / "none.onnx", data, "--head", "knn"), "backbone not found")
    one_line_failure(train(tmp_path, tinymodels.save("classify", tmp_path / "c.onnx"), data, "--head", "linear"),
                     "not a feature backbone")
    for p in (data / "train" / "red").iterdir():
        p.write_bytes(b"not an image")
    one_line_failure(train(tmp_path, backbone, data, "--head", "knn"), "class 'red' has no readable training image")
    for p in (data / "train" / "red").iterdir():
        p.unlink()
    one_line_failure(train(tmp_path, backbone, data, "--head", "knn"), "has no images")
    one_line_failure(train(tmp_path, backbone, data, "--head", "knn", "--mode", "finetune"), "fast mode only")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_without_tensorflow_the_keras_head_points_to_the_numpy_heads_and_export_checks_the_run_first(setup):
    tmp_path, backbone, data = setup
    proc = edgevision("train", data, "--runs-dir", tmp_path / "runs", cache=tmp_path / "cache")
    assert proc.returncode == 2 and "--head linear (or knn)" in proc.stderr
    proc = edgevision("export", tmp_path / "no-such-run", "--out", tmp_path / "m.onnx", cache=tmp_path / "cache")
    assert proc.returncode == 2 and "run folder not found" in proc.stderr


def test_an_export_target_that_cannot_be_written_is_found_before_training(setup):
    tmp_path, backbone, data = setup
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    proc = train(tmp_path, backbone, data, "--head", "linear", "--export", blocked / "m.onnx")
    one_line_failure(proc, str(blocked))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing was trained
    proc = train(tmp_path, backbone, data, "--head", "linear", "--export", tmp_path / "out" / "m.onnx")
    assert proc.returncode == 0 and "export it:" not in proc.stderr  # the export follows at once: no hint

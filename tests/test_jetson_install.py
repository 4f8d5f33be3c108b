"""The runtime installed the Jetson way, simulated on this machine: a fresh venv (Python 3.10, as on
JetPack 6, where it exists), ``pip install --no-deps -e .`` with the JetPack 6 constraints
(numpy < 2), an onnxruntime wheel, an OpenCV built for numpy 1.x and onnx, and no tomli or TensorFlow.
doctor, info, predict and run must work there with no traceback and the same answers, and so must
training a numpy head (train --head knn) on an ONNX backbone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "deploy" / "constraints-jetpack6.txt"


def _python310() -> str:
    """A working Python 3.10 (JetPack 6's), else this interpreter."""
    pyenv = sorted(map(str, Path.home().glob(".pyenv/versions/3.10*/bin/python3.10")))
    candidates = [shutil.which("python3.10"), *pyenv]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "import venv"], capture_output=True, timeout=30).returncode == 0:
            return candidate
    return sys.executable


PYTHON = _python310()
# Stand-ins for JetPack's own packages: a CPU onnxruntime (NVIDIA's GPU wheel is aarch64-only) and an
# OpenCV release built against numpy 1.x.
RUNTIME = ["numpy<2", "onnxruntime>=1.18,<1.24", "opencv-python-headless>=4.8,<4.11", "onnx>=1.16,<1.20"]


def _pip(venv: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def jetson_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("jetson") / "venv"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
    probe = _pip(venv, "download", "--no-deps", "-d", str(venv / "probe"), "numpy<2", timeout=120)
    if probe.returncode:
        pytest.skip(f"no package index reachable, cannot build the Jetson-like venv: {probe.stderr.strip()[-200:]}")
    proc = _pip(venv, "install", *RUNTIME)
    assert proc.returncode == 0, proc.stderr
    proc = _pip(venv, "install", "--no-deps", "-c", str(CONSTRAINTS), "-e", str(ROOT))
    assert proc.returncode == 0, proc.stderr
    return venv


def _edgevision(venv: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYTHONPATH")}
    proc = subprocess.run([str(venv / "bin" / "edgevision"), *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def test_the_jetson_like_venv_has_no_training_packages_and_numpy_1(jetson_venv):
    check = ("import importlib.util as u, numpy; "
             "print(numpy.__version__, [m for m in ('tomli', 'tensorflow', 'keras', 'tf2onnx') if u.find_spec(m)])")
    out = subprocess.run([str(jetson_venv / "bin" / "python"), "-c", check], capture_output=True, text=True,
                         timeout=60).stdout.split(maxsplit=1)
    assert out[0].startswith("1.") and out[1].strip() == "[]"


def test_doctor_and_info_work_there(jetson_venv):
    proc = _edgevision(jetson_venv, "doctor")
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1].startswith("verdict: ready for CPU")
    proc = _edgevision(jetson_venv, "info", "models/thumbs.onnx")
    assert proc.returncode == 0 and json.loads(proc.stdout)["providers_that_load"]["CPUExecutionProvider"] is True


def test_predict_and_run_there_give_the_answers_of_the_full_install(jetson_venv, tmp_path):
    import cv2

    clip = ROOT / "camera" / "samples" / "thumbs_demo.mp4"
    cap = cv2.VideoCapture(str(clip))
    ok, frame = cap.read()
    cap.release()
    assert ok
    cv2.imwrite(str(tmp_path / "first.png"), frame)
    theirs = _edgevision(jetson_venv, "predict", "--model", "models/thumbs.onnx", str(tmp_path / "first.png"))
    assert theirs.returncode == 0, theirs.stderr
    import edgevision

    ours = edgevision.load(ROOT / "models" / "thumbs.onnx", providers="cpu")(frame)
    got = json.loads(theirs.stdout)
    assert got["label"] == ours.label and abs(got["score"] - ours.score) < 1e-3
    out = tmp_path / "run.jsonl"
    proc = _edgevision(jetson_venv, "run", "--model", "models/thumbs.onnx", "--source", str(clip), "--no-display",
                       "--jsonl", str(out), "--max-frames", "20")
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 20


def test_a_knn_head_trains_there_without_tensorflow_and_predicts(jetson_venv, tmp_path):
    import tinymodels

    backbone = tinymodels.save_backbone(tmp_path / "bb.onnx")
    tinymodels.colour_photos(tmp_path / "data" / "train", per_class=4)
    tinymodels.colour_photos(tmp_path / "data" / "val", per_class=2, seed=1)
    out = tmp_path / "knn.onnx"
    proc = _edgevision(jetson_venv, "train", str(tmp_path / "data"), "--head", "knn", "--backbone-onnx", str(backbone),
                       "--input-size", "32", "--runs-dir", str(tmp_path / "runs"), "--export", str(out))
    assert proc.returncode == 0, proc.stderr
    proc = _edgevision(jetson_venv, "predict", "--model", str(out), str(tmp_path / "data" / "val"))
    assert proc.returncode == 0 and "accuracy 1.0000 on the 6" in proc.stderr, proc.stderr

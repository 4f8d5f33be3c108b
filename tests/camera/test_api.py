"""The Python API: edgevision.load -> call on a frame, to_dict as predict prints it, stream, chains,
pipeline files. The CLI runs on the same code (tests/test_cli.py)."""

import json
import subprocess
import sys

import cv2
import edgevision
import numpy as np
import pytest
from conftest import solid_frame


@pytest.mark.parametrize("kind", ["classify", "keypoints", "segment", "detect"])
def test_load_and_call_gives_the_result_predict_prints(tiny_model, tmp_path, kind):
    model = edgevision.load(tiny_model(kind), providers="cpu")
    frame = solid_frame(60, 80)
    result = model(frame)
    assert model.kind == kind and result.kind == kind and "CPU" in model.provider
    image = tmp_path / "img" / "x.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), frame)
    proc = subprocess.run([sys.executable, "-m", "edgevision", "predict", "--model", str(model.path), str(image),
                           "--providers", "cpu"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout.splitlines()[0])
    assert printed == {"file": str(image), **result.to_dict()}


def test_a_red_frame_is_red_and_a_batch_gives_one_result_each(tiny_model):
    model = edgevision.load(tiny_model("classify"), providers="cpu")
    assert model(solid_frame(20, 20, (0, 0, 255))).label == "red"
    results = model.predict([solid_frame(20, 20, (0, 255, 0)), solid_frame(40, 10, (255, 0, 0))])
    assert [r.label for r in results] == ["green", "blue"]
    with pytest.raises(ValueError, match="uint8 BGR"):
        model(np.zeros((4, 4, 3), np.float32))


def test_stream_yields_every_frame_of_a_video_with_its_result(tiny_model, synthetic_video):
    model = edgevision.load(tiny_model("classify"), providers="cpu")
    labels = [result.label for frame, result in model.stream(str(synthetic_video(n=30)))]
    assert labels == ["red"] * 10 + ["green"] * 10 + ["blue"] * 10
    assert len(list(model.stream(str(synthetic_video(n=30, name="b.mp4")), max_frames=4))) == 4


def test_a_chain_loads_with_then_and_from_a_pipeline_file(tiny_model, tmp_path):
    det, cls = tiny_model("detect"), tiny_model("classify")
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[10:50, 10:50] = (0, 255, 0)  # the tiny detector's 'cat' box, green
    chain = edgevision.load(det, then=cls, providers="cpu", crop_margin=0.0)
    assert chain.kind == "chain" and chain(frame).top_label() == "green"
    pipeline = tmp_path / "pipe.json"
    pipeline.write_text(json.dumps({"model": det.name, "then": cls.name, "crop_margin": 0.0}))
    (tmp_path / det.name).write_bytes(det.read_bytes()) if det.parent != tmp_path else None
    (tmp_path / cls.name).write_bytes(cls.read_bytes()) if cls.parent != tmp_path else None
    from_file = edgevision.load(pipeline, providers="cpu")
    assert from_file.kind == "chain" and from_file(frame).to_dict() == chain(frame).to_dict()


@pytest.mark.parametrize("text, message", [
    ("[1]", "JSON object"), ('{"then": "x.onnx"}', "JSON object"), ('{"model": "a.onnx", "thne": "b"}', "unknown"),
    ("{not json", "cannot read"), ('{"model": "a.onnx", "crop_margin": "big"}', "must be a number"),
])
def test_bad_pipeline_files_fail_with_one_clear_error(tmp_path, text, message):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(edgevision.UserError, match=message):
        edgevision.load(path)


def test_a_pipeline_file_and_then_together_are_refused(tiny_model, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"model": str(tiny_model("detect")), "then": str(tiny_model("classify"))}))
    with pytest.raises(edgevision.UserError, match="drop --then"):
        edgevision.load(path, then=tiny_model("classify"))


def test_the_readme_python_example_runs_as_written():
    """The README's ```python block, run from the repository root on the shipped models and clip."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("classify ('thumbs_down', 'thumbs_up')")
    assert json.loads(lines[2].replace("'", '"'))["task"] == "classify" and lines[-1] == "chain"


def test_a_pipeline_file_sets_the_detectors_operating_threshold(tiny_model, tmp_path):
    det, cls = tiny_model("detect"), tiny_model("classify")
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[10:50, 10:50] = (0, 255, 0)
    path = tmp_path / "strict.json"
    path.write_text(json.dumps({"model": str(det), "then": str(cls), "score_threshold": 0.95}))
    assert edgevision.load(path, providers="cpu")(frame).top_label() is None  # the 0.9 box is below 0.95
    assert edgevision.load(path, providers="cpu", score_threshold=0.5)(frame).top_label() == "green"

import io
import json

import cv2
import numpy as np
import pytest
from conftest import playable_frames
from edgevision.camera import record, sinks
from edgevision.deploy.errors import UserError

RECORD = {"frame": 0, "timestamp": 1.0, "result": {"task": "classify", "label": "a", "score": 0.9, "scores": {}},
          "timings_ms": {}, "stats": {"fps": 10.0, "latency_ms": 5.0, "provider": "CPU"}}


def test_jsonl_sink_writes_one_object_per_frame(tmp_path):
    sink = sinks.JsonlSink(tmp_path / "sub" / "out.jsonl")
    for i in range(3):
        assert sink.write(np.zeros((2, 2, 3), np.uint8), RECORD | {"frame": i})
    sink.close()
    lines = (tmp_path / "sub" / "out.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [0, 1, 2]


def test_outputs_are_never_overwritten_unless_asked(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("precious\n")
    with pytest.raises(UserError, match="exists: choose another name or pass --overwrite"):
        sinks.JsonlSink(path)
    assert path.read_text() == "precious\n"
    sinks.JsonlSink(path, overwrite=True).close()
    assert path.read_text() == ""


def test_video_sink_writes_a_video_opencv_can_read_back(tmp_path):
    path = tmp_path / "out.mp4"
    sink = record.VideoSink(path, fps=15)
    for i in range(12):
        sink.write(np.full((48, 64, 3), i * 20, np.uint8), RECORD)
    sink.write(np.zeros((10, 10, 3), np.uint8), RECORD)  # a frame of another size is resized, not fatal
    sink.close()
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 13
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (64, 48)
    cap.release()


def test_video_sink_refuses_an_unknown_container(tmp_path):
    with pytest.raises(UserError, match="--record .*out.gif: use one of"):
        record.VideoSink(tmp_path / "out.gif")


def test_console_sink_prints_a_short_line_every_interval_and_when_the_label_changes():
    stream = io.StringIO()
    sink = sinks.ConsoleSink(every_s=1.0, stream=stream)
    for t in (0.0, 0.5, 1.2, 1.3):
        sink.write(None, RECORD | {"timestamp": t})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "a 0.90" in lines[0] and "10.0 FPS" in lines[0]
    sink.write(None, RECORD | {"timestamp": 1.4, "result": RECORD["result"] | {"label": "b"}})
    assert stream.getvalue().splitlines()[-1].split()[2] == "b"


def test_no_display_is_detected_from_the_environment(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not sinks.display_available()
    with pytest.raises(UserError, match="no display for a window.*--no-display"):
        sinks.WindowSink()


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"task": "keypoints", "points": {"nose": [10.4, 20.6]}}, "nose=(10,21)"),
        ({"task": "segment", "fractions": {"bg": 0.75, "person": 0.25}}, "bg 75% person 25%"),
        ({"task": "detect", "detections": [{"label": "cat", "score": 0.5, "xyxy": [0, 0, 1, 1]}]}, "1 found: cat 0.50"),
    ],
)
def test_summary_text_covers_every_task_kind(result, expected):
    assert sinks.summary_text(result) == expected


def test_the_pipelined_loop_keeps_every_frame_of_a_file_in_order(tiny_model, synthetic_video):
    from edgevision.camera.live import run_loop
    from edgevision.camera.sources import open_source
    from edgevision.deploy.runner import Runner, RunnerOptions

    class Collect:
        def __init__(self):
            self.records = []

        def write(self, image, record):
            self.records.append(record)
            return True

        def close(self):
            pass

    sink = Collect()
    with open_source(str(synthetic_video(45))) as source:
        stats = run_loop(source, Runner(tiny_model("classify"), RunnerOptions(providers="cpu")), [sink], draw=False)
    assert [r["frame"] for r in sink.records] == list(range(45)) and stats.frames == 45
    assert [r["result"]["label"] for r in sink.records[::10]] == ["red", "green", "blue", "red", "green"]
    assert all(r["timings_ms"]["preprocess_ms"] >= 0 and "capture_ms" in r["timings_ms"] for r in sink.records)



def test_webm_is_vp8_and_the_codec_is_said(tmp_path):
    told = []
    sink = record.VideoSink(tmp_path / "out.webm", fps=10, say=told.append)
    for i in range(8):
        sink.write(np.full((48, 64, 3), i * 30, np.uint8), RECORD)
    sink.close()
    assert told == [f"recording {tmp_path / 'out.webm'} as VP8 (VP80)"] and playable_frames(tmp_path / "out.webm") == 8


def test_a_disk_about_to_fill_finishes_the_recording_playable_and_stops(tmp_path, monkeypatch):
    path = tmp_path / "out.mp4"
    sink = record.VideoSink(path, fps=10)
    frame = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    for _ in range(5):
        sink.write(frame, RECORD)
    usage = record.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(record.shutil, "disk_usage", lambda p: usage._replace(free=record.RESERVE_BYTES // 2))
    with pytest.raises(UserError, match=r"disk is almost full .* finished at 5 frames .* and plays"):
        sink.write(frame, RECORD)
    with pytest.raises(UserError, match="recording stopped"):  # and it stays stopped
        sink.write(frame, RECORD)
    sink.close()
    assert playable_frames(path) == 5

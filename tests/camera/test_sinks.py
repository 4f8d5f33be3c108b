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


class _Keep:
    """A sink that keeps every record."""

    def __init__(self):
        self.records = []

    def write(self, image, record):
        self.records.append(record)
        return True

    def close(self):
        pass


def test_the_pipelined_loop_keeps_every_frame_of_a_file_in_order(tiny_model, synthetic_video):
    from edgevision.camera.live import run_loop
    from edgevision.camera.sources import open_source
    from edgevision.deploy.runner import Runner, RunnerOptions

    sink = _Keep()
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


class _FakeSource:
    """Frames from a list; ``fail`` raises after them, as a lost camera does."""

    def __init__(self, images, live=False, fail=None):
        import time as _time

        from edgevision.camera.sources import Frame

        self.frames = [Frame(i, _time.time(), im) for i, im in enumerate(images)]
        self.live, self.fail, self.description, self.skipped = live, fail, "fake", []

    def __iter__(self):
        yield from self.frames
        if self.fail is not None:
            raise self.fail


def _counting_runner(tiny_model, monkeypatch, threads=0):
    from edgevision.deploy.providers import ProviderConfig
    from edgevision.deploy.runner import Runner, RunnerOptions

    runner = Runner(tiny_model("classify"), RunnerOptions(providers="cpu", config=ProviderConfig(threads=threads)))
    sizes = []
    run = runner.run
    monkeypatch.setattr(runner, "run", lambda prepared: (sizes.append(len(prepared.batch)), run(prepared))[1])
    return runner, sizes


def _colours(n):
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]  # BGR red, green, blue
    return [np.full((48, 64, 3), colours[i % 3], np.uint8) for i in range(n)]


def test_files_run_two_frames_per_inference_with_the_answers_of_one(tiny_model, monkeypatch):
    from edgevision.camera.live import FILE_BATCH, run_loop

    runner, sizes = _counting_runner(tiny_model, monkeypatch)
    images = _colours(7)
    sink = _Keep()
    stats = run_loop(_FakeSource(images), runner, [sink], draw=False)
    assert FILE_BATCH == 2 and sizes == [2, 2, 2, 1] and stats.frames == 7
    assert [r["frame"] for r in sink.records] == list(range(7))
    alone = [runner(im).to_dict() for im in images]
    for kept, single in zip(sink.records, alone):
        assert kept["result"]["label"] == single["label"]
        assert kept["result"]["score"] == pytest.approx(single["score"], abs=1e-5)
    sink = _Keep()
    stats = run_loop(_FakeSource(images), runner, [sink], max_frames=3, draw=False)
    assert [r["frame"] for r in sink.records] == [0, 1, 2] and stats.stopped_by == "--max-frames"


def test_files_are_read_in_line_when_the_model_has_every_core_else_by_a_second_thread(tiny_model, monkeypatch):
    from edgevision.camera import live

    runner, sizes = _counting_runner(tiny_model, monkeypatch)
    assert live.feeding(_FakeSource([]), runner) == (False, 2)
    assert live.feeding(_FakeSource([], live=True), runner) == (True, 1)
    one_core, _ = _counting_runner(tiny_model, monkeypatch, threads=1)
    assert live.feeding(_FakeSource([]), one_core) == (True, 1)
    threads = []
    prepare = one_core.prepare
    monkeypatch.setattr(one_core, "prepare", lambda frames: (threads.append(live.threading.current_thread().name),
                                                             prepare(frames))[1])
    sink = _Keep()
    live.run_loop(_FakeSource(_colours(5)), one_core, [sink], draw=False)
    assert [r["frame"] for r in sink.records] == list(range(5)) and set(threads) == {"edgevision-prepare"}


def test_live_sources_run_one_frame_at_a_time(tiny_model, monkeypatch):
    from edgevision.camera.live import run_loop

    runner, sizes = _counting_runner(tiny_model, monkeypatch)
    run_loop(_FakeSource(_colours(3), live=True), runner, [_Keep()], draw=False)
    assert sizes and set(sizes) == {1}


@pytest.mark.parametrize("threads", [0, 1])  # in line, and by the preparing thread
def test_a_lost_source_raises_after_the_frames_read_before_it(tiny_model, monkeypatch, threads):
    from edgevision.camera.live import run_loop
    from edgevision.camera.sources import SourceLost

    runner, _ = _counting_runner(tiny_model, monkeypatch, threads)
    sink = _Keep()
    with pytest.raises(SourceLost, match="gone"):
        run_loop(_FakeSource(_colours(3), fail=SourceLost("gone")), runner, [sink], draw=False)
    assert [r["frame"] for r in sink.records] == [0, 1, 2]  # the third, read alone, was not dropped


@pytest.mark.parametrize("threads", [0, 1])
def test_a_frame_that_cannot_be_prepared_stops_the_loop_instead_of_hanging_it(tiny_model, monkeypatch, threads):
    from edgevision.camera.live import run_loop

    runner, _ = _counting_runner(tiny_model, monkeypatch, threads)
    images = [*_colours(3), np.zeros((48, 64, 4), np.uint8)]  # four channels: prepare refuses it
    with pytest.raises(ValueError, match=r"must have shape \(h, w, 3\)"):
        run_loop(_FakeSource(images), runner, [_Keep()], draw=False)


def test_the_fps_of_frames_that_come_in_pairs_is_frames_per_second_not_the_gap_between_the_two(tiny_model,
                                                                                               monkeypatch):
    import time

    from edgevision.camera.live import run_loop

    runner, sizes = _counting_runner(tiny_model, monkeypatch)
    run = runner.run
    monkeypatch.setattr(runner, "run", lambda prepared: (time.sleep(0.04), run(prepared))[1])  # 20 ms a frame
    sink = _Keep()
    run_loop(_FakeSource(_colours(8)), runner, [sink], draw=False)
    assert sizes == [2, 2, 2, 2]
    shown = [r["stats"]["fps"] for r in sink.records[2:]]  # the first pair has no rate yet
    assert all(25 < fps < 55 for fps in shown), shown

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import solid_frame
from edgevision.camera import sources as S


@pytest.mark.parametrize(
    ("text", "kind", "target"),
    [
        ("0", "webcam", 0),
        ("12", "webcam", 12),
        ("/dev/video1", "device", "/dev/video1"),
        ("csi://0", "csi", 0),
        ("csi://2", "csi", 2),
        ("rtsp://cam.local:554/stream", "url", "rtsp://cam.local:554/stream"),
        ("http://10.0.0.2:8080/video", "url", "http://10.0.0.2:8080/video"),
        ("videotestsrc ! videoconvert ! appsink", "gstreamer", "videotestsrc ! videoconvert ! appsink"),
    ],
)
def test_parse_source_recognises_live_sources(text, kind, target):
    spec = S.parse_source(text)
    assert (spec.kind, spec.target) == (kind, target)
    assert spec.live


def test_parse_source_recognises_files_and_folders(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.MP4").write_bytes(b"x")
    (tmp_path / "c.txt").write_bytes(b"x")
    assert S.parse_source(str(tmp_path)).kind == "images"
    assert S.parse_source(str(tmp_path / "a.jpg")).kind == "image"
    assert S.parse_source(str(tmp_path / "b.MP4")).kind == "video"
    with pytest.raises(S.SourceError, match="cannot tell what"):
        S.parse_source(str(tmp_path / "c.txt"))
    with pytest.raises(S.SourceError, match="source not found"):
        S.parse_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(S.SourceError, match="--source is empty"):
        S.parse_source("  ")


def test_csi_pipeline_drops_stale_frames():
    pipeline = S.csi_pipeline(1)
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 ")
    assert pipeline.endswith("appsink drop=true max-buffers=1")


@pytest.mark.skipif(S.opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
def test_csi_without_gstreamer_says_why_and_how_to_fix_it():
    with pytest.raises(S.SourceError, match="built without GStreamer.*JetPack's OpenCV"):
        S.open_source("csi://0")


def test_a_camera_index_that_does_not_open_is_a_clear_error():
    with pytest.raises(S.SourceError, match="camera 97 did not open: check that a camera is connected"):
        S.open_source("97")


def test_video_file_hands_over_every_frame_in_order(synthetic_video):
    with S.open_source(str(synthetic_video(25))) as source:
        frames = list(source)
    assert [f.index for f in frames] == list(range(25))
    assert frames[0].image.shape == (96, 128, 3)
    assert frames[0].image[10, 10, 2] > 200 and frames[12].image[10, 10, 1] > 200  # red, then green


def test_image_folder_skips_and_counts_unreadable_files(tmp_path):
    cv2.imwrite(str(tmp_path / "1.png"), solid_frame(20, 30))
    (tmp_path / "2.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "3.jpg").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "4.jpg"), solid_frame(40, 10))
    (tmp_path / "notes.txt").write_text("ignored")
    with S.open_source(str(tmp_path)) as source:
        frames = list(source)
    assert [Path(f.name).name for f in frames] == ["1.png", "4.jpg"]
    assert [f.index for f in frames] == [0, 1]
    assert sorted(p.name for p in source.skipped) == ["2.jpg", "3.jpg"]


def test_an_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(S.SourceError, match="no images in folder"):
        S.open_source(str(tmp_path))


class FakeCamera:
    """A capture that produces numbered frames at a fixed rate, like a 200 FPS camera."""

    def __init__(self, frames: int, period_s: float = 0.005) -> None:
        self.frames, self.period_s, self.sent = frames, period_s, 0
        self.released = threading.Event()

    def read(self):
        if self.sent >= self.frames:
            return False, None
        time.sleep(self.period_s)
        image = np.full((4, 4, 3), self.sent % 256, np.uint8)
        self.sent += 1
        return True, image

    def release(self):
        self.released.set()


def test_live_source_hands_over_the_newest_frame_and_drops_stale_ones():
    camera = FakeCamera(frames=60)
    seen = []
    with S.LiveSource(camera, "fake camera") as source, pytest.raises(S.SourceLost, match="fake camera ended"):
        for frame in source:  # a camera that stops sending is lost (exit code 3), not a finished file
            seen.append(int(frame.image[0, 0, 0]))
            time.sleep(0.03)  # a slow model: six camera frames per processed frame
    assert camera.released.is_set()
    assert seen == sorted(seen) and len(set(seen)) == len(seen)  # newer every time, never repeated
    assert len(seen) < 30  # stale frames were dropped, not queued
    assert source.dropped > 30
    assert seen[-1] == 59  # the last frame the camera sent was delivered


def test_live_source_age_of_a_frame_stays_small_with_a_slow_consumer():
    camera = FakeCamera(frames=400, period_s=0.002)
    ages = []
    with S.LiveSource(camera, "fake camera") as source:
        for frame in source:
            time.sleep(0.02)
            ages.append(time.time() - frame.timestamp)
            if len(ages) == 10:
                break
    # Each frame is at most one camera period plus one processing step old when it is used.
    assert max(ages[1:]) < 0.2


def test_live_source_that_sends_nothing_is_a_clear_error():
    with pytest.raises(S.SourceError, match="opened but sent no frame"):
        S.LiveSource(FakeCamera(frames=0), "silent camera")


def test_video_file_in_realtime_is_paced_at_its_frame_rate(synthetic_video):
    with S.open_source(str(synthetic_video(9)), realtime=True) as source:  # 30 FPS clip
        start = time.perf_counter()
        frames = list(source)
        took = time.perf_counter() - start
    assert len(frames) == 9 and took >= 8 / 30 - 0.01


def test_video_file_loop_starts_again_at_the_end(synthetic_video):
    with S.open_source(str(synthetic_video(5)), loop=True) as source:
        frames = []
        for frame in source:
            frames.append(frame)
            if len(frames) == 12:
                break
    assert [f.index for f in frames] == list(range(12))
    np.testing.assert_array_equal(frames[0].image, frames[5].image)


def test_loop_is_refused_for_sources_that_are_not_video_files(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), solid_frame(8, 8))
    with pytest.raises(S.SourceError, match="--loop applies to video files"):
        S.open_source(str(tmp_path), loop=True)


def test_http_url_source_reads_a_stream_served_on_loopback(synthetic_video):
    import functools
    import http.server

    clip = synthetic_video(40)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(clip.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{clip.name}"
        assert S.parse_source(url).kind == "url"
        with S.open_source(url) as source:
            assert source.live
            frames = [f for _, f in zip(range(5), source)]
        assert len(frames) == 5 and frames[0].image.shape == (96, 128, 3)
        assert [f.index for f in frames] == list(range(5))
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_stream_is_a_clear_error():
    with pytest.raises(S.SourceError, match="did not open: check the address"):
        S.open_source("rtsp://127.0.0.1:9/nothing")


def test_a_folder_source_reads_sub_folders_as_predict_does_but_not_the_trash(tmp_path):
    from edgevision.deploy.images import collect_images

    for rel in ("a/1.png", "b/2.png", "3.png", ".trash/a/4.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / rel), np.zeros((8, 8, 3), np.uint8))
    with S.open_source(str(tmp_path)) as source:
        names = [frame.name for frame in source]
    assert len(names) == 3 and not any("4.png" in n for n in names)
    assert [p.name for p in collect_images([str(tmp_path)])] == ["3.png", "1.png", "2.png"]

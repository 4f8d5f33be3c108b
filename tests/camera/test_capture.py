"""Camera controls: sizes, rates, pixel formats, flips and URI forms."""

import cv2
import numpy as np
import pytest
from edgevision.camera import sources as S
from edgevision.camera.capture import CaptureOptions, csi_pipeline, set_v4l2_controls
from edgevision.deploy.errors import UserError


def test_jetson_inference_uri_forms_are_understood(tmp_path):
    assert S.parse_source("v4l2:///dev/video1") == S.SourceSpec("device", "/dev/video1")
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"")
    assert S.parse_source(f"file://{clip}") == S.SourceSpec("video", str(clip))


@pytest.mark.parametrize("flip, expected", [("horizontal", lambda f: f[:, ::-1]), ("vertical", lambda f: f[::-1]),
                                            ("rotate-180", lambda f: f[::-1, ::-1])])
def test_flip_applies_to_every_frame_of_any_source(synthetic_video, flip, expected):
    clip = str(synthetic_video(5))
    with S.open_source(clip) as plain, S.open_source(clip, options=CaptureOptions(flip=flip)) as flipped:
        for a, b in zip(plain, flipped):
            np.testing.assert_array_equal(expected(a.image), b.image)
        assert "flipped" in flipped.description


def test_camera_controls_on_a_file_or_a_format_on_csi_are_refused(synthetic_video):
    with pytest.raises(UserError, match="camera controls"):
        S.open_source(str(synthetic_video(3)), options=CaptureOptions(width=640, height=480))
    with pytest.raises(UserError, match="fourcc is for V4L2"):
        S.open_source("csi://0", options=CaptureOptions(fourcc="MJPG"))


@pytest.mark.parametrize("kwargs, message", [({"width": 640}, "together"), ({"fps": 0}, "--fps"),
                                             ({"fourcc": "MJPEG"}, "four characters"), ({"flip": "left"}, "--flip")])
def test_bad_capture_options_fail_when_built(kwargs, message):
    with pytest.raises(UserError, match=message):
        CaptureOptions(**kwargs)


def test_the_csi_pipeline_carries_size_rate_and_flip():
    pipeline = csi_pipeline(1, CaptureOptions(width=1920, height=1080, fps=60, flip="rotate-180"))
    assert "sensor-id=1" in pipeline and "width=1920,height=1080,framerate=60/1" in pipeline
    assert "nvvidconv flip-method=2" in pipeline and pipeline.endswith("appsink drop=true max-buffers=1")
    assert "width=1280,height=720,framerate=30/1" in csi_pipeline(0) and "flip-method=0" in csi_pipeline(0)


class FakeCamera:
    """A V4L2 capture that offers 640x480 at 30 FPS in YUYV, or 1280x720 at 30 in MJPG."""

    def __init__(self):
        self.props = {cv2.CAP_PROP_FOURCC: cv2.VideoWriter_fourcc(*"YUYV"), cv2.CAP_PROP_FRAME_WIDTH: 640,
                      cv2.CAP_PROP_FRAME_HEIGHT: 480, cv2.CAP_PROP_FPS: 30}
        self.calls = []

    def set(self, prop, value):
        self.calls.append(prop)
        if prop == cv2.CAP_PROP_FOURCC and value == cv2.VideoWriter_fourcc(*"MJPG"):
            self.props[prop] = value
        elif prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT):
            mjpg = self.props[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
            limit = 1280 if prop == cv2.CAP_PROP_FRAME_WIDTH else 720
            self.props[prop] = min(value, limit if mjpg else (640 if limit == 1280 else 480))
        return True

    def get(self, prop):
        return float(self.props[prop])


def test_v4l2_controls_set_the_format_first_and_say_what_the_camera_gave():
    cam = FakeCamera()
    line = set_v4l2_controls(cam, CaptureOptions(width=1280, height=720, fps=30, fourcc="MJPG"))
    assert cam.calls[0] == cv2.CAP_PROP_FOURCC  # a format change resets the size: it goes first
    assert line == "1280x720 at 30 FPS, MJPG"
    line = set_v4l2_controls(FakeCamera(), CaptureOptions(width=1280, height=720))
    assert line == "640x480 at 30 FPS, YUYV (asked for 1280x720: the camera does not offer it)"

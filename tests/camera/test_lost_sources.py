"""Live sources that die, stall and come back: a loopback MJPEG server under the test's control;
reconnect with backoff, stall detection, exit code 3 when the source is lost, 0 at the end of a file,
130/143 after Ctrl-C/SIGTERM with outputs finished."""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import threading
import time

import cv2
import numpy as np
import pytest
from edgevision.camera import sources as S
from test_cli import EDGEVISION, HEADLESS


class Camera:
    """What the server does: 'serve' frames, 'stall' (keep the connection, send nothing), 'die'
    (close it), or 'down' (refuse new connections)."""

    def __init__(self) -> None:
        self.mode = "serve"
        self.connections = 0
        self.jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), (0, 0, 255), np.uint8))[1].tobytes()


def serve(camera: Camera):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            if camera.mode == "down":
                self.send_error(503)
                return
            camera.connections += 1
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for _ in range(2000):  # bounded: at most a minute and a half of frames
                    if camera.mode == "die" or camera.mode == "down":
                        return
                    if camera.mode == "stall":
                        time.sleep(0.05)
                        continue
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(camera.jpeg)).encode() + b"\r\n\r\n" + camera.jpeg + b"\r\n")
                    time.sleep(0.04)
            except (BrokenPipeError, ConnectionResetError):
                return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"


@pytest.fixture
def camera():
    cam = Camera()
    server, url = serve(cam)
    cam.url = url
    yield cam
    cam.mode = "down"
    server.shutdown()
    server.server_close()


def _frames(source, n: int, timeout: float = 20.0) -> int:
    got, start = 0, time.monotonic()
    for _ in source:
        got += 1
        if got >= n or time.monotonic() - start > timeout:
            break
    return got


@pytest.mark.parametrize("trouble", ["die", "stall"])
def test_a_stream_that_dies_or_stalls_is_reconnected_when_it_comes_back(camera, trouble):
    told = []
    with S.open_source(camera.url, stall_timeout_s=1.0, reconnect_for_s=20, notice=told.append) as source:
        assert _frames(source, 5) == 5
        camera.mode = trouble
        timer = threading.Timer(2.0, lambda: setattr(camera, "mode", "serve"))
        timer.start()
        assert _frames(source, 5) == 5  # frames again after the reconnect
        timer.cancel()
    assert source.reconnects >= 1 and camera.connections >= 2
    assert any("reconnecting (attempt 1)" in t for t in told) and any("is back" in t for t in told)
    if trouble == "stall":
        assert any("sent no frame for 1 s" in t for t in told)


def test_a_stream_that_stays_down_is_lost_with_exit_code_3(camera, tmp_path, tiny_model):
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([*EDGEVISION, "run", "--model", str(tiny_model("classify")), "--source", camera.url,
                             "--no-display", "--jsonl", str(out), "--stall-timeout", "1", "--reconnect-timeout", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=HEADLESS)
    deadline = time.monotonic() + 30
    while (not out.exists() or len(out.read_text().splitlines()) < 3) and time.monotonic() < deadline:
        time.sleep(0.1)
    camera.mode = "down"
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "Traceback" not in err and "gave up after" in err and "reconnecting" in err
    lines = out.read_text().splitlines()
    assert len(lines) >= 3 and json.loads(lines[-1])["result"]["label"] == "red"  # JSON lines finished, kept


def test_without_reconnect_a_lost_stream_ends_at_once_with_exit_code_3(camera, tiny_model):
    proc = subprocess.Popen([*EDGEVISION, "run", "--model", str(tiny_model("classify")), "--source", camera.url,
                             "--no-display", "--no-reconnect", "--stall-timeout", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=HEADLESS)
    time.sleep(3)
    camera.mode = "stall"
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3 and "sent no frame for 1 s (lost" in err, err


def test_the_end_of_a_file_is_exit_0_and_reconnect_is_refused_for_files(synthetic_video, tiny_model):
    clip = str(synthetic_video(5))
    proc = subprocess.run([*EDGEVISION, "run", "--model", str(tiny_model("classify")), "--source", clip,
                           "--no-display"], capture_output=True, text=True, env=HEADLESS, timeout=60)
    assert proc.returncode == 0 and "stopped by end of stream" in proc.stderr
    proc = subprocess.run([*EDGEVISION, "run", "--model", str(tiny_model("classify")), "--source", clip,
                           "--no-display", "--reconnect"], capture_output=True, text=True, env=HEADLESS, timeout=60)
    assert proc.returncode == 2 and "--reconnect applies to cameras and streams" in proc.stderr


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_ctrl_c_and_sigterm_finish_the_outputs_and_exit_130_or_143(camera, tmp_path, tiny_model, sig, code, word):
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([*EDGEVISION, "run", "--model", str(tiny_model("classify")), "--source", camera.url,
                             "--no-display", "--jsonl", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=HEADLESS)
    deadline = time.monotonic() + 30
    while (not out.exists() or len(out.read_text().splitlines()) < 3) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert f"stopped by {word}" in err and "Traceback" not in err
    assert all(json.loads(line) for line in out.read_text().splitlines())

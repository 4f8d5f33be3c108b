"""``--serve``: the web page, MJPEG stream, result JSON and collect controls, over real HTTP on 127.0.0.1;
a viewer never slows or leaks the loop (stalled, vanishing and many viewers)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, unquote

import cv2
import numpy as np
import pytest
from edgevision.camera import serve as S
from edgevision.deploy.errors import UserError
from test_cli import EDGEVISION, HEADLESS


class Served:
    """A running 'edgevision ... --serve' in a child process: its URL (``link`` as printed, with the token;
    ``url`` without it), its token, its stderr lines, its pid. Requests carry the token unless told not to."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen([*EDGEVISION, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=HEADLESS)
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError("the server ended early:\n" + "".join(self.lines))
            self.lines.append(line)
            m = re.search(r"(http://\S+/)(\?token=(\S+))?", line)
            if m and "serving on" in line:
                self.link, self.url = m.group(0), m.group(1)
                self.token = unquote(m.group(3)) if m.group(3) else None
                self.port = int(self.url.rsplit(":", 1)[1].strip("/"))
                break
        else:
            raise AssertionError("no URL printed:\n" + "".join(self.lines))
        threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True).start()

    def said(self, text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.05)
        return False

    def path(self, path: str, auth: bool = True) -> str:
        """``path`` with the token in its query (as the page's requests carry it)."""
        if not (auth and self.token):
            return path
        return f"{path}{'&' if '?' in path else '?'}token={quote(self.token, safe='')}"

    def get(self, path: str, headers: dict | None = None, timeout: float = 10.0, auth: bool = True):
        request = urllib.request.Request(self.url + self.path(path, auth).lstrip("/"), headers=headers or {})
        return urllib.request.urlopen(request, timeout=timeout)

    def json(self, path: str, auth: bool = True):
        with self.get(path, auth=auth) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict, headers: dict | None = None) -> int:
        request = urllib.request.Request(self.url + self.path(path).lstrip("/"), data=json.dumps(body).encode(),
                                         method="POST", headers={"Content-Type": "application/json", **(headers or {})})
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status

    def threads(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"Threads:\s+(\d+)", status).group(1))

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)
        return "".join(self.lines)


@pytest.fixture
def served():
    running: list[Served] = []

    def start(*args: str) -> Served:
        s = Served([str(a) for a in args])
        running.append(s)
        return s

    yield start
    for s in running:
        s.stop()


def mjpeg_frames(response, count: int) -> list[np.ndarray]:
    """Read ``count`` parts of a multipart/x-mixed-replace stream: boundary, headers, one JPEG each."""
    boundary = re.search(r"boundary=(\S+)", response.headers["Content-Type"]).group(1).encode()
    frames = []
    while len(frames) < count:
        line = response.readline()
        if not line.strip():
            continue
        assert line.strip() == b"--" + boundary, line
        headers = {}
        while (line := response.readline().strip()):
            key, _, value = line.decode().partition(":")
            headers[key.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        data = response.read(int(headers["content-length"]))
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None, "a part that is not a JPEG"
        frames.append(image)
    return frames


def test_addresses_bind_to_localhost_unless_a_host_is_given():
    assert S.parse_address("8080") == ("127.0.0.1", 8080)
    assert S.parse_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert S.parse_address("[::]:9000") == ("::", 9000)
    assert S.parse_address("jetson.local:80") == ("jetson.local", 80)
    for bad in ("http", "70000", "host:port"):
        with pytest.raises(UserError, match="--serve"):
            S.parse_address(bad)


def test_nothing_is_encoded_without_a_viewer_and_at_most_fps_with_one():
    hub = S.FrameHub(fps=20, quality=60)
    try:
        frame = np.zeros((48, 64, 3), np.uint8)
        for _ in range(20):
            hub.publish(frame, {"frame": 1})
            time.sleep(0.005)
        assert hub.encoded == 0  # no viewer: the loop's frames cost nothing
        with hub.cond:
            hub.viewers = 1
        start = time.monotonic()
        while time.monotonic() - start < 1.0:
            hub.publish(frame, {"frame": 2})
            time.sleep(0.002)
        assert 5 <= hub.encoded <= 22, hub.encoded  # about 20 a second, never one per published frame (~300)
    finally:
        hub.close()


def test_a_stalled_viewer_is_dropped_after_the_timeout(monkeypatch):
    monkeypatch.setattr(S._Handler, "timeout", 1.0)
    server = S.WebServer("127.0.0.1:0", {"mode": "run"}, fps=50)
    try:
        stalled = socket.create_connection(("127.0.0.1", server.port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(f"GET /stream.mjpg?token={server.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                        .encode())  # then never reads
        big = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)  # ~200 KB JPEGs
        deadline = time.monotonic() + 20
        seen = False
        while time.monotonic() < deadline:
            server.publish(big, {"frame": 0})
            time.sleep(0.02)
            seen = seen or server.hub.viewers == 1
            if seen and server.hub.viewers == 0:
                break
        assert seen and server.hub.viewers == 0, "the stalled viewer was never dropped"
        stalled.close()
    finally:
        server.close()


def test_run_serves_page_mjpeg_result_and_events_on_localhost(served, synthetic_video, tiny_model, tmp_path):
    clip = synthetic_video(90, size=(96, 128))
    s = served("run", "--model", tiny_model("classify"), "--source", clip, "--loop", "--no-display",
               "--serve", "0", "--jsonl", tmp_path / "out.jsonl")
    assert s.url.startswith("http://127.0.0.1:")
    assert s.said("ssh -L")  # how to open it from another machine
    with s.get("/") as r:
        page = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/html") and "stream.mjpg" in page and "/events" in page
    with s.get("/stream.mjpg") as r:
        frames = mjpeg_frames(r, 4)
    assert all(f.shape == (96, 128, 3) for f in frames)
    info = s.json("/info")
    assert info["mode"] == "run" and info["provider"] == "CPU" and info["labels"] == ["red", "green", "blue"]
    result = s.json("/result")
    written = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert set(result) == set(written) and result["result"]["label"] in info["labels"]  # the --jsonl record
    with s.get("/events") as r:
        line = r.readline()
        assert line.startswith(b"data: ") and json.loads(line[6:])["result"]["task"] == "classify"
    with pytest.raises(urllib.error.HTTPError) as err:
        s.get("/nothing")
    assert err.value.code == 404
    lan = S.lan_address()
    if lan and not lan.startswith("127."):  # bound to loopback only: not reachable on the LAN address
        with pytest.raises(OSError):
            socket.create_connection((lan, int(s.url.rsplit(":", 1)[1].strip("/"))), timeout=2).close()


def test_all_interfaces_warn_and_a_token_guards_every_route(served, synthetic_video, tiny_model):
    s = served("run", "--model", tiny_model("classify"), "--source", synthetic_video(30), "--loop", "--no-display",
               "--serve", "0.0.0.0:0")
    assert s.said("anyone on the network who has the URL")
    s.stop()
    proc = subprocess.run([*EDGEVISION, "run", "--model", str(tiny_model("classify")), "--source",
                           str(synthetic_video(5)), "--no-display", "--serve", "0.0.0.0:0", "--serve-token", ""],
                          capture_output=True, text=True, env=HEADLESS, timeout=60)
    assert proc.returncode == 2 and "--serve-token is empty" in proc.stderr  # never an open server by mistake
    s = served("run", "--model", tiny_model("classify"), "--source", synthetic_video(30), "--loop", "--no-display",
               "--serve", "127.0.0.1:0", "--serve-token", "a b&c")
    assert s.said("?token=a%20b%26c") and s.said("then open http://localhost:")
    assert "token=a%20b%26c" in next(line for line in s.lines if "ssh -L" in line)
    for path in ("/", "/result", "/stream.mjpg", "/info", "/frame.jpg"):
        with pytest.raises(urllib.error.HTTPError) as err:
            s.get(path, auth=False)
        assert err.value.code == 401
    with pytest.raises(urllib.error.HTTPError):
        s.get("/result?token=wrong", auth=False)
    assert s.json("/info?token=a%20b%26c", auth=False)["mode"] == "run"
    with s.get("/frame.jpg", headers={"X-Edgevision-Token": "a b&c"}, auth=False) as r:
        assert cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR) is not None


def test_many_vanishing_and_stalled_viewers_neither_stop_the_loop_nor_leak_threads(served, synthetic_video,
                                                                                  tiny_model):
    s = served("run", "--model", tiny_model("classify"), "--source", synthetic_video(60), "--loop", "--no-display",
               "--serve", "0")
    s.json("/result")
    time.sleep(1.0)
    before = s.threads()
    stalled = []
    for _ in range(20):  # twenty viewers that connect and never read
        c = socket.create_connection(("127.0.0.1", s.port))
        c.sendall(f"GET {s.path('/stream.mjpg')} HTTP/1.1\r\nHost: 127.0.0.1:{s.port}\r\n\r\n".encode())
        stalled.append(c)
    for _ in range(30):  # and thirty that take one frame and vanish
        with s.get("/stream.mjpg") as r:
            mjpeg_frames(r, 1)
    first = s.json("/result")["frame"]
    time.sleep(1.5)
    assert s.json("/result")["frame"] != first, "the loop stopped while viewers stalled"
    for c in stalled:
        c.close()
    deadline = time.monotonic() + 15
    while s.threads() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert s.threads() <= before + 2, (before, s.threads())


def test_collect_serve_saves_undoes_and_reviews_from_the_page(served, synthetic_video, tmp_path):
    data = tmp_path / "data"
    s = served("collect", data, "--classes", "up,down", "--source", synthetic_video(600), "--serve", "0")
    assert s.json("/info")["mode"] == "collect"
    for key in ("1", "2", "2"):
        assert s.post("/key", {"key": key}) == 200
    deadline = time.monotonic() + 10
    while len(list(data.rglob("*.jpg"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(list((data / "up").glob("*.jpg"))) == 1 and len(list((data / "down").glob("*.jpg"))) == 2
    s.post("/key", {"key": "u"})
    deadline = time.monotonic() + 10
    while not list((data / ".trash").rglob("*.jpg")) and time.monotonic() < deadline:  # made, then moved into
        time.sleep(0.1)
    assert len(list((data / "down").glob("*.jpg"))) == 1 and len(list((data / ".trash").rglob("*.jpg"))) == 1
    deadline = time.monotonic() + 10  # the page's state follows at the next frame
    while s.json("/result")["state"]["counts"] != {"up": 1, "down": 1} and time.monotonic() < deadline:
        time.sleep(0.1)
    state = s.json("/result")["state"]
    assert state["counts"] == {"up": 1, "down": 1} and state["active"] == 1 and "undone" in state["message"]
    s.post("/key", {"key": "q"})
    assert s.proc.wait(timeout=20) == 0
    s = served("collect", data, "--classes", "up,down", "--review", "--serve", "0")
    s.post("/key", {"key": "2"})  # the first image (down/...) stays, the next relabel moves up -> down
    s.post("/key", {"key": "ArrowRight"})
    s.post("/key", {"key": "2"})
    s.post("/key", {"key": "q"})
    assert s.proc.wait(timeout=20) == 0
    assert len(list((data / "down").glob("*.jpg"))) == 2 and not list((data / "up").glob("*.jpg"))


def test_collect_serve_points_by_clicks_on_a_frozen_frame(served, synthetic_video, tmp_path):
    data = tmp_path / "pts"
    s = served("collect", data, "--points", "nose,chin", "--source", synthetic_video(600, size=(96, 128)),
               "--serve", "0")
    s.post("/click", {"x": 40.5, "y": 30.0})  # freezes the frame and places the nose
    s.post("/click", {"x": 60.0, "y": 80.25})
    s.post("/key", {"key": "Enter"})
    deadline = time.monotonic() + 10
    while not (data / "labels.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    rows = (data / "labels.csv").read_text().splitlines()
    assert rows[0] == "file,nose_x,nose_y,chin_x,chin_y" and rows[1].endswith(",40.5,30.0,60.0,80.2")
    with pytest.raises(urllib.error.HTTPError) as err:
        s.post("/click", {"x": "left"})
    assert err.value.code == 400
    for headers in ({"Content-Type": "text/plain"}, {"Origin": "http://evil.example"}):  # another site's page
        with pytest.raises(urllib.error.HTTPError) as err:
            s.post("/key", {"key": "Escape"}, headers)
        assert err.value.code == 403
    s.post("/key", {"key": "q"})
    assert s.proc.wait(timeout=20) == 0


def test_serve_options_without_serve_are_refused(tiny_model, synthetic_video):
    proc = subprocess.run([*EDGEVISION, "run", "--model", str(tiny_model("classify")), "--source",
                           str(synthetic_video(5)), "--no-display", "--serve-token", "x"],
                          capture_output=True, text=True, env=HEADLESS, timeout=60)
    assert proc.returncode == 2 and "--serve-token needs --serve" in proc.stderr
    proc = subprocess.run([*EDGEVISION, "run", "--model", str(tiny_model("classify")), "--source",
                           str(synthetic_video(5)), "--no-display", "--serve-quality", "15"],
                          capture_output=True, text=True, env=HEADLESS, timeout=60)
    assert proc.returncode == 2 and "--serve-quality needs --serve" in proc.stderr  # 15 is not its default
    proc = subprocess.run([*EDGEVISION, "run", "--model", str(tiny_model("classify")), "--source",
                           str(synthetic_video(5)), "--no-display", "--serve", "99999"],
                          capture_output=True, text=True, env=HEADLESS, timeout=60)
    assert proc.returncode == 2 and "outside 0..65535" in proc.stderr and "Traceback" not in proc.stderr


def test_collect_serve_live_head_learns_and_its_button_exports(served, synthetic_video, tmp_path):
    import tinymodels
    from edgevision.deploy.runner import Runner, RunnerOptions

    backbone = tinymodels.save_backbone(tmp_path / "bb.onnx")
    out = tmp_path / "live.onnx"
    s = served("collect", tmp_path / "data", "--classes", "a,b", "--source", synthetic_video(900), "--serve", "0",
               "--live-head", "knn", "--backbone-onnx", backbone, "--live-head-out", out)
    for key in ("1", "2", "1", "2"):
        s.post("/key", {"key": key})
    deadline = time.monotonic() + 10
    while not ((s.json("/result") or {}).get("state") or {}).get("live_head") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert s.json("/result")["state"]["live_head"]  # the page shows its export button
    deadline = time.monotonic() + 20
    while not out.exists() and time.monotonic() < deadline:  # the worker embeds in the background first
        s.post("/key", {"key": "Enter"})
        time.sleep(0.5)
    s.post("/key", {"key": "q"})
    assert s.proc.wait(timeout=20) == 0
    assert f"exported the live kNN head to {out}" in s.stop()
    assert Runner(out, RunnerOptions(providers="cpu")).spec.labels == ("a", "b")


def test_collect_loop_keeps_a_short_clip_going_for_the_page(served, synthetic_video, tmp_path):
    s = served("collect", tmp_path / "data", "--classes", "a,b", "--source", synthetic_video(5), "--loop",
               "--serve", "0")
    time.sleep(2.0)  # five frames at 30 FPS would have ended long ago
    assert s.proc.poll() is None
    s.post("/key", {"key": "1"})
    s.post("/key", {"key": "q"})
    assert s.proc.wait(timeout=20) == 0 and len(list((tmp_path / "data" / "a").glob("*.jpg"))) == 1

"""``--serve`` against other pages and other clients, over raw sockets on 127.0.0.1: a refused request never
smuggles a second one, a foreign Host (DNS rebinding) gets nothing, a token is made by default and then
travels as a cookie, addresses beyond loopback warn and print URLs a browser can open, a non-ASCII token
works in every form, and review keeps no clicks."""

from __future__ import annotations

import http.client
import json
import queue
import socket
import subprocess
import time

import cv2
import numpy as np
import pytest
from edgevision.camera import serve as S
from edgevision.camera.collect_window import WEB_KEYS, WebWindow
from edgevision.camera.serve_access import check_host_names
from edgevision.deploy.errors import UserError
from test_cli import EDGEVISION, HEADLESS
from test_serve import mjpeg_frames
from test_serve import served as served  # the fixture


def exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send raw bytes on a new connection and read until the server closes it: (all it sent, closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(data)
        got = b""
        try:
            while chunk := c.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:  # still open: a keep-alive connection waiting for the next request
            return got, False
        return got, True


def request(method: str, path: str, host: str, headers: dict | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def files(folder) -> list:
    return sorted(folder.rglob("*.jpg")) if folder.exists() else []


def wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_refused_request_closes_the_connection_and_its_body_is_never_run(served, synthetic_video, tmp_path):
    data = tmp_path / "data"
    s = served("collect", data, "--classes", "up,down", "--source", synthetic_video(90), "--loop", "--serve", "0")
    here = f"127.0.0.1:{s.port}"
    body = json.dumps({"key": "1"}).encode()  # the second request: a valid post, token and all, that saves to up
    second = request("POST", s.path("/key"), here, {"Content-Type": "application/json"}, body)
    json_type = {"Content-Type": "application/json"}
    refusals = {  # each first request is refused before its body is read; the body is the second request
        "text/plain form": (request("POST", s.path("/key"), here, {"Content-Type": "text/plain"}, second), 403),
        "foreign Origin": (request("POST", s.path("/key"), here, {**json_type, "Origin": "http://evil.example"},
                                   second), 403),
        "another port's page": (request("POST", s.path("/key"), here,
                                        {**json_type, "Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},
                                        second), 403),
        "too large": (request("POST", s.path("/key"), here, json_type).replace(
            b"Content-Length: 0", b"Content-Length: 5000") + second, 413),
        "no token": (request("POST", "/key", here, json_type, second), 401),
        "no such route": (request("POST", s.path("/nothing"), here, json_type, second), 404),
        "GET with a body": (request("GET", s.path("/result"), here, {}, second), 400),
        "unknown method": (request("PUT", s.path("/key"), here, json_type, second), 501),
        "foreign Host": (request("POST", s.path("/key"), f"evil.example:{s.port}", json_type, second), 403),
    }
    answers = {name: exchange(s.port, raw) for name, (raw, _) in refusals.items()}
    assert s.post("/key", {"key": "2"}) == 200  # a real save, after the refusals, in the same inbox
    assert wait_for(lambda: len(files(data / "down")) == 1)
    assert files(data / "up") == [], "a refused request's body was run as a second request"
    for name, (response, closed) in answers.items():
        assert status(response) == refusals[name][1], (name, response[:200])
        assert response.count(b"HTTP/1.1 ") == 1, (name, response)  # one answer: the body was not a request
        assert b"Connection: close" in response and closed, f"{name}: the connection was kept open"
    s.post("/key", {"key": "q"})
    assert s.proc.wait(timeout=20) == 0


def test_a_foreign_host_gets_nothing_on_any_route(served, synthetic_video, tmp_path):
    data = tmp_path / "data"
    s = served("collect", data, "--classes", "up,down", "--source", synthetic_video(90), "--loop", "--serve", "0")
    evil = f"evil.example:{s.port}"  # a DNS-rebinding page: its name now points at 127.0.0.1, its Origin matches
    same = {"Origin": f"http://{evil}"}
    for path in ("/", "/result", "/frame.jpg", "/info", "/stream.mjpg", "/events"):
        response, closed = exchange(s.port, request("GET", s.path(path), evil, same))
        assert status(response) == 403 and closed, (path, response[:200])
        assert b"stream.mjpg" not in response and b'"mode"' not in response
    for path, body in (("/key", {"key": "1"}), ("/click", {"x": 1.0, "y": 2.0})):
        post = request("POST", s.path(path), evil, {**same, "Content-Type": "application/json"},
                       json.dumps(body).encode())
        response, closed = exchange(s.port, post)
        assert status(response) == 403 and closed
    response, closed = exchange(s.port, f"GET {s.path('/result')} HTTP/1.0\r\n\r\n".encode())  # no Host at all
    assert status(response) == 403 and closed
    assert s.post("/key", {"key": "2"}) == 200
    assert wait_for(lambda: len(files(data / "down")) == 1)
    assert files(data / "up") == []  # the foreign Host's post saved nothing
    s.post("/key", {"key": "q"})
    assert s.proc.wait(timeout=20) == 0


def get_status(port: int, path: str, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


def test_loopback_names_the_bound_host_and_allowed_names_are_answered(served, synthetic_video, tiny_model, tmp_path):
    s = served("run", "--model", tiny_model("classify"), "--source", synthetic_video(60), "--loop", "--no-display",
               "--serve", "localhost:0", "--serve-allow-host", "devbox.lan", "--serve-allow-host", "cam.example,b")
    assert s.link.startswith("http://localhost:")  # the name the user gave, which the browser will send
    for host in (f"127.0.0.1:{s.port}", f"127.0.0.2:{s.port}", f"localhost:{s.port}", f"LOCALHOST.:{s.port}",
                 f"[::1]:{s.port}", "localhost", f"devbox.lan:{s.port}", f"cam.example:{s.port}", "b"):
        assert get_status(s.port, s.path("/result"), host) == 200, host
    for host in (f"devbox.lan.evil:{s.port}", f"192.168.1.7:{s.port}", "localhost:x", "[evil]:80", ""):
        assert get_status(s.port, s.path("/result"), host) == 403, host
    proc = subprocess.run([*EDGEVISION, "collect", str(tmp_path / "data"), "--classes", "a,b", "--source",
                           str(synthetic_video(5)), "--serve", "0", "--serve-allow-host", "http://devbox:80"],
                          capture_output=True, text=True, env=HEADLESS, timeout=60)
    assert proc.returncode == 2 and "--serve-allow-host takes a host name" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_random_token_is_made_by_default_and_the_page_sets_it_as_a_cookie(served, synthetic_video, tiny_model):
    s = served("run", "--model", tiny_model("classify"), "--source", synthetic_video(60), "--loop", "--no-display",
               "--serve", "0")
    assert s.token and len(s.token) >= 32 and s.link.startswith("http://127.0.0.1:")
    assert s.said("ssh -L") and f"?token={s.token}" in next(line for line in s.lines if "ssh -L" in line)
    here = f"127.0.0.1:{s.port}"
    for path in ("/", "/result", "/frame.jpg", "/stream.mjpg", "/events", "/info"):
        response, closed = exchange(s.port, request("GET", path, here))
        assert status(response) == 401 and closed, path
    response, _ = exchange(s.port, request("GET", "/result?token=not-it", here))
    assert status(response) == 401
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    conn.request("GET", s.path("/"))  # the printed URL
    page = conn.getresponse()
    assert page.status == 200 and b"stream.mjpg" in page.read()
    cookie = page.getheader("Set-Cookie")
    attributes = [a.strip() for a in cookie.split(";")]
    name, _, value = attributes[0].partition("=")
    assert name == f"edgevision-{s.port}" and value and {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes)
    conn.close()
    with s.get("/result", headers={"Cookie": f"other=1; {name}={value}"}, auth=False) as r:
        assert json.loads(r.read())["result"]["task"] == "classify"
    with s.get("/stream.mjpg", headers={"Cookie": f"{name}={value}"}, auth=False) as r:
        assert mjpeg_frames(r, 1)[0].shape == (96, 128, 3)
    for cookie in (f"{name}=x{value}", f"edgevision-{s.port + 1}={value}"):
        response, _ = exchange(s.port, request("GET", "/result", here, {"Cookie": cookie}))
        assert status(response) == 401, cookie


@pytest.mark.parametrize("bound, warns, urls", [
    ("127.0.0.1", False, ["http://127.0.0.1:8080/?token=T", "http://localhost:8080/?token=T"]),
    ("::1", False, ["http://[::1]:8080/?token=T"]),
    ("0.0.0.0", True, ["http://192.168.1.7:8080/?token=T", "http://jet:8080/?token=T", "http://127.0.0.1:8080/"]),
    ("::ffff:0.0.0.0", True, ["http://192.168.1.7:8080/?token=T", "http://127.0.0.1:8080/"]),
    ("::", True, ["http://192.168.1.7:8080/?token=T", "http://[::1]:8080/"]),
    ("192.168.1.7", True, ["http://192.168.1.7:8080/?token=T"]),
])
def test_the_banner_warns_for_every_address_beyond_loopback_and_prints_usable_urls(bound, warns, urls):
    typed = {"0.0.0.0": "0", "::ffff:0.0.0.0": "::ffff:0.0.0.0"}.get(bound, bound)  # '0' binds 0.0.0.0
    text = "\n".join(S.banner_lines(typed, bound, 8080, "T", lan="192.168.1.7", hostname="jet"))
    assert ("anyone on the network" in text) == warns, text
    assert all(url in text for url in urls), text
    assert "http://0:" not in text and "http://0.0:" not in text and "[::ffff:" not in text


@pytest.mark.parametrize("address, reach", [("0:0", "all"), ("0.0:0", "all"), ("[::ffff:0.0.0.0]:0", "all"),
                                            ("127.1:0", "loopback"), ("localhost:0", "loopback")])
def test_the_server_decides_loopback_from_the_address_it_listens_on(address, reach):
    lines: list[str] = []
    server = S.WebServer(address, {"mode": "run"}, say=lines.append)  # all interfaces for a moment: no traffic
    try:
        text = "\n".join(lines)
        assert ("anyone on the network" in text) == (reach == "all"), text
        assert "http://0:" not in text and "http://0.0:" not in text and "[::ffff:" not in text
        assert server.url().startswith("http://127.0.0.1:") and server.reach == reach
    finally:
        server.close()


def test_a_non_ascii_token_works_in_the_url_the_headers_and_the_cookie(served, synthetic_video, tiny_model):
    token = "pässwörd✓"
    s = served("run", "--model", tiny_model("classify"), "--source", synthetic_video(60), "--loop", "--no-display",
               "--serve", "0", "--serve-token", token)
    assert s.token == token and "p%C3%A4ssw%C3%B6rd%E2%9C%93" in s.link
    for headers in ({"X-Edgevision-Token": token.encode()}, {"Authorization": b"Bearer " + token.encode()},
                    {}):
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        conn.request("GET", "/" if headers else s.path("/"), headers=headers)  # bytes go as sent (UTF-8)
        r = conn.getresponse()
        assert r.status == 200, (headers, r.read())
        cookie = r.getheader("Set-Cookie").split(";")[0]
        conn.close()
    with s.get("/result", headers={"Cookie": cookie}, auth=False) as r:
        assert r.status == 200
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    conn.request("GET", "/result", headers={"X-Edgevision-Token": "pässwörd".encode()})
    assert conn.getresponse().status == 401
    conn.close()
    proc = subprocess.run([*EDGEVISION, "run", "--model", str(tiny_model("classify")), "--source",
                           str(synthetic_video(5)), "--no-display", "--serve", "0", "--serve-token", b"s\xffcret"],
                          capture_output=True, text=True, env={**HEADLESS, "LC_ALL": "C.UTF-8"}, timeout=60)
    assert proc.returncode == 2 and "--serve-token is not valid text" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_review_refuses_clicks_so_a_flood_never_holds_back_the_owners_keys(served, tmp_path):
    data = tmp_path / "data"
    (data / "up").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(data / "up" / f"{i}.jpg"), np.full((32, 32, 3), 40 * i, np.uint8))
    s = served("collect", data, "--classes", "up,down", "--review", "--serve", "0")
    here = f"127.0.0.1:{s.port}"
    click = request("POST", s.path("/click"), here, {"Content-Type": "application/json"}, b'{"x": 1, "y": 2}')
    for _ in range(300):  # more than the inbox holds
        response, closed = exchange(s.port, click)
        assert status(response) == 404 and closed
    assert s.post("/key", {"key": "2"}) == 200  # relabel the first photo: up -> down
    assert wait_for(lambda: len(files(data / "down")) == 1)
    s.post("/key", {"key": "q"})
    assert s.proc.wait(timeout=20) == 0


class _Server:
    def __init__(self) -> None:
        self.inbox: queue.Queue = queue.Queue(maxsize=256)

    def publish(self, view, state=None) -> None:
        pass


def test_a_burst_of_clicks_reaches_the_collector_with_the_key_behind_it_in_one_frame():
    window = WebWindow(_Server())
    for i in range(255):
        window.server.inbox.put_nowait(("click", float(i), 1.0))
    window.server.inbox.put_nowait(("key", "Enter"))
    assert window.show(np.zeros((8, 8, 3), np.uint8)) == WEB_KEYS["Enter"]
    assert len(window.take_clicks()) == 255 and window.server.inbox.empty()


def test_inputs_and_allowed_hosts_are_checked_when_built():
    with pytest.raises(ValueError, match="inputs are 'key' and 'click'"):
        S.WebServer("127.0.0.1:0", {"mode": "collect"}, inputs=("keys",))
    for bad in ("devbox:8080", "http://devbox", "*", "a/b"):
        with pytest.raises(UserError, match="--serve-allow-host"):
            check_host_names([bad])
    assert check_host_names(["Devbox.LAN., other", "x"]) == ("devbox.lan", "other", "x")

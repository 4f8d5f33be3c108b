"""``--serve``: the live frame, its results and the collect controls as a web page, for headless devices.

One small HTTP server from the standard library (``http.server``, one thread per connection), so a
Jetson needs nothing more. Routes:

- ``/``: the page (``camera/web/index.html``, one static file);
- ``/stream.mjpg``: the annotated frames as MJPEG (``multipart/x-mixed-replace``);
- ``/frame.jpg``: the newest frame as one JPEG;
- ``/result``: the newest record, the same JSON that ``--jsonl`` writes; ``/events``: the same as
  server-sent events; ``/info``: the model, provider, source and mode;
- ``POST /key`` and ``POST /click`` (collect and review only): the page's keys, buttons and clicks.

The loop never waits for a viewer: ``publish`` only keeps a reference to the newest frame; one
encoder thread turns it into a JPEG at most ``fps`` times a second, and only while someone watches,
so N viewers cost one encode per frame, not N. Each viewer's thread sends the newest JPEG when its
socket is ready: a slow viewer skips frames, a stalled one is dropped after ``CLIENT_TIMEOUT_S``, one
that vanishes ends its thread at the next write.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import queue
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import cv2
import numpy as np

from ..deploy.errors import UserError

PAGE = Path(__file__).with_name("web") / "index.html"
BOUNDARY = "edgevisionframe"
CLIENT_TIMEOUT_S = 10.0  # a viewer that takes no data for this long is dropped
MAX_VIEWERS = 64  # streams at once (MJPEG + events); more get 503
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_address(text: str) -> tuple[str, int]:
    """'8080' -> ('127.0.0.1', 8080); '0.0.0.0:8080', 'myhost:8080', '[::]:8080' as written."""
    if not text.strip():
        raise UserError("--serve takes [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080; got an empty value")
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise UserError(f"--serve takes [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080; got {text!r}") from None
    if not 0 <= number <= 65535:
        raise UserError(f"--serve: port {number} is outside 0..65535")
    return host, number


def _all_interfaces(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _lan_address() -> str | None:
    """This machine's address on its default route (no packet is sent), for the URL to print."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
    except OSError:
        return None


class FrameHub:
    """The newest frame, its JPEG (made by one thread, only while someone watches) and the newest record."""

    def __init__(self, fps: float = 15.0, quality: int = 70) -> None:
        if not fps > 0:
            raise UserError(f"--serve-fps must be above 0, got {fps}")
        if not 1 <= quality <= 100:
            raise UserError(f"--serve-quality must be within 1..100, got {quality}")
        self.interval = 1.0 / fps
        self.quality = quality
        self.cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._image_seq = 0
        self.jpeg: bytes | None = None
        self.jpeg_seq = 0
        self.record: dict | None = None
        self.record_seq = 0
        self.state: dict | None = None  # collect/review: counts, active class, message...
        self.viewers = 0
        self.wanted_until = 0.0  # a single /frame.jpg asked for a fresh encode
        self.encoded = 0
        self.closed = False
        self._thread = threading.Thread(target=self._encode_loop, name="edgevision-serve-encode", daemon=True)
        self._thread.start()

    # --- the loop's side: never blocks on a viewer ----------------------------------------------
    def publish(self, image: np.ndarray, record: dict | None = None, state: dict | None = None) -> None:
        with self.cond:
            self._image = image
            self._image_seq += 1
            if record is not None:
                self.record, self.record_seq = record, self.record_seq + 1
            if state is not None and state != self.state:
                self.state, self.record_seq = state, self.record_seq + 1
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self._thread.join(timeout=2.0)

    def _encode_loop(self) -> None:
        done_seq, last = 0, 0.0
        params = [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        while True:
            with self.cond:
                due = lambda seen=done_seq: self.closed or (self._image_seq != seen and self._watched())  # noqa: E731
                self.cond.wait_for(due, 0.5)
                if self.closed:
                    return
                if self._image_seq == done_seq or not self._watched():
                    continue
                image, seq = self._image, self._image_seq
            wait = last + self.interval - time.monotonic()
            if wait > 0:  # at most `fps` encodes a second; the newest frame at the end of the wait wins
                time.sleep(wait)
                with self.cond:
                    image, seq = self._image, self._image_seq
            ok, buf = cv2.imencode(".jpg", image, params)
            last = time.monotonic()
            done_seq = seq
            if ok:
                with self.cond:
                    self.jpeg, self.jpeg_seq = buf.tobytes(), self.jpeg_seq + 1
                    self.encoded += 1
                    self.cond.notify_all()

    def _watched(self) -> bool:
        return self.viewers > 0 or time.monotonic() < self.wanted_until

    # --- the viewers' side ------------------------------------------------------------------
    def wait_jpeg(self, after: int, timeout: float) -> tuple[bytes | None, int]:
        with self.cond:
            self.cond.wait_for(lambda: self.closed or (self.jpeg is not None and self.jpeg_seq != after), timeout)
            return self.jpeg, self.jpeg_seq

    def fresh_jpeg(self, timeout: float = 2.0) -> bytes | None:
        with self.cond:
            self.wanted_until = time.monotonic() + timeout
            seq = self.jpeg_seq
            self.cond.notify_all()
        jpeg, _ = self.wait_jpeg(seq, timeout)
        return jpeg

    def wait_event(self, after: int, timeout: float) -> tuple[dict | None, int]:
        with self.cond:
            self.cond.wait_for(lambda: self.closed or self.record_seq != after, timeout)
            return self.event(), self.record_seq

    def event(self) -> dict | None:
        if self.state is not None:
            return {"state": self.state, **({"record": self.record} if self.record else {})}
        return self.record


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CLIENT_TIMEOUT_S  # socket timeout: a stalled viewer's write fails instead of hanging
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # quiet: the loop's status line says enough
        pass

    # --- routing ----------------------------------------------------------------------------
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if not self._allowed(url.query):
            return
        route = {
            "/": self._page, "/index.html": self._page, "/stream.mjpg": self._mjpeg, "/frame.jpg": self._frame,
            "/result": self._result, "/events": self._events, "/info": self._info,
        }.get(url.path)
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        else:
            route()

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if not self._allowed(url.query):
            return
        inbox = self.server.inbox
        if inbox is None or url.path not in ("/key", "/click"):
            self._send(HTTPStatus.NOT_FOUND, b"nothing to post here\n", "text/plain")
            return
        # Another site open in the user's browser must not save, undo or delete: the page posts JSON (a
        # cross-site form cannot, and a cross-site fetch of JSON needs a preflight this server refuses)
        # from its own origin.
        origin = self.headers.get("Origin")
        if (self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json"
                or (origin is not None and urlsplit(origin).netloc != self.headers.get("Host"))):
            self._send(HTTPStatus.FORBIDDEN, b"only the page itself may post here (JSON, same origin)\n",
                       "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= 4096:
                raise ValueError("body too large or empty")
            body = json.loads(self.rfile.read(length))
            event = ("key", str(body["key"])) if url.path == "/key" else ("click", float(body["x"]), float(body["y"]))
        except (ValueError, KeyError, TypeError) as exc:
            self._send(HTTPStatus.BAD_REQUEST, f"bad request: {exc}\n".encode(), "text/plain")
            return
        try:
            inbox.put_nowait(event)
        except queue.Full:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"busy\n", "text/plain")
            return
        self._send(HTTPStatus.OK, b"{}", "application/json")

    def _allowed(self, query: str) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = parse_qs(query).get("token", [""])[0] or self.headers.get("X-Edgevision-Token", "")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = given or auth[7:]
        if hmac.compare_digest(given.encode(), token.encode()):
            return True
        said = "a wrong token" if given else "no token"
        self._send(HTTPStatus.UNAUTHORIZED, f"{said}: open the URL printed by edgevision (with ?token=...)\n"
                   .encode(), "text/plain")
        return False

    # --- responses --------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _page(self) -> None:
        self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")

    def _info(self) -> None:
        self._send(HTTPStatus.OK, json.dumps(self.server.info).encode(), "application/json")

    def _result(self) -> None:
        event = self.server.hub.event()
        body = json.dumps(event, separators=(",", ":")).encode() if event is not None else b"null"
        self._send(HTTPStatus.OK, body, "application/json")

    def _frame(self) -> None:
        jpeg = self.server.hub.fresh_jpeg()
        if jpeg is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no frame yet\n", "text/plain")
        else:
            self._send(HTTPStatus.OK, jpeg, "image/jpeg")

    def _stream_start(self, content_type: str) -> bool:
        hub = self.server.hub
        with hub.cond:
            if hub.viewers >= MAX_VIEWERS:
                busy = True
            else:
                busy = False
                hub.viewers += 1
                hub.cond.notify_all()
        if busy:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"more than {MAX_VIEWERS} viewers\n".encode(), "text/plain")
            return False
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        return True

    def _peer_gone(self) -> bool:
        """True when the viewer closed its connection (readable with nothing to read)."""
        import select

        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _stream_end(self) -> None:
        hub = self.server.hub
        with hub.cond:
            hub.viewers -= 1

    def _mjpeg(self) -> None:
        if not self._stream_start(f"multipart/x-mixed-replace; boundary={BOUNDARY}"):
            return
        hub, seq = self.server.hub, 0
        try:
            while not hub.closed:
                jpeg, new_seq = hub.wait_jpeg(seq, 1.0)
                if jpeg is None or new_seq == seq:
                    if self._peer_gone():  # no new frame to write, so a viewer that left is found this way
                        return
                    continue
                seq = new_seq
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                 .encode() + jpeg + b"\r\n")
                self.wfile.flush()
        except OSError:  # the viewer left (or stalled past the timeout): its thread ends here
            pass
        finally:
            self._stream_end()

    def _events(self) -> None:
        if not self._stream_start("text/event-stream"):
            return
        hub, seq, interval = self.server.hub, -1, self.server.hub.interval
        try:
            while not hub.closed:
                event, new_seq = hub.wait_event(seq, 1.0)
                if new_seq == seq and self._peer_gone():
                    return
                if new_seq == seq:
                    self.wfile.write(b": keep-alive\n\n")  # a comment line: keeps proxies from closing an idle stream
                else:
                    seq = new_seq
                    self.wfile.write(b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")
                self.wfile.flush()
                time.sleep(interval)  # at most `fps` events a second per viewer
            self.wfile.write(b"event: end\ndata: {}\n\n")
            self.wfile.flush()
        except OSError:
            pass
        finally:
            self._stream_end()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    hub: FrameHub
    token: str | None
    info: dict
    inbox: queue.Queue | None


class _Server6(_Server):
    address_family = socket.AF_INET6


def _cap_malloc_arenas(count: int = 2) -> None:
    """glibc gives threads their own malloc arenas (up to 8 per core) and keeps what they held: with a
    thread per viewer visit, RSS grew ~10 MB per storm of 1,400 visits; capped (as MALLOC_ARENA_MAX=2
    would), it stayed flat (bench_serve). Only where glibc's mallopt exists; elsewhere nothing."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, count)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


class WebServer:
    """The server in a background thread; ``url`` is what to open. ``inbox`` receives the page's keys
    and clicks (collect and review); the run page only watches."""

    def __init__(self, address: str, info: dict, fps: float = 15.0, quality: int = 70, token: str | None = None,
                 inputs: bool = False, say=None) -> None:
        host, port = parse_address(address)
        if token is not None and not token.strip():
            raise UserError("--serve-token is empty (an unset variable?): give a secret, or drop the option")
        _cap_malloc_arenas()
        self.hub = FrameHub(fps, quality)
        self.inbox: queue.Queue | None = queue.Queue(maxsize=256) if inputs else None
        try:
            server_class = _Server6 if ":" in host else _Server
            self.httpd = server_class((host, port), _Handler)
        except OSError as exc:
            self.hub.close()
            raise UserError(f"--serve {address}: cannot listen there ({exc.strerror or exc})") from exc
        except UnicodeError as exc:
            self.hub.close()
            raise UserError(f"--serve {address}: not a host name ({exc})") from exc
        self.httpd.hub, self.httpd.token, self.httpd.info, self.httpd.inbox = self.hub, token, info, self.inbox
        self.port = self.httpd.server_address[1]
        self.host = host
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgevision-serve", daemon=True)
        self._thread.start()
        if say is not None:
            for line in self.banner(token):
                say(line)

    def url(self, host: str | None = None, token: str | None = None) -> str:
        host = host or ("127.0.0.1" if _all_interfaces(self.host) else self.host)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/" + (f"?token={quote(token, safe='')}" if token else "")

    def banner(self, token: str | None) -> list[str]:
        if not _all_interfaces(self.host):
            lines = [f"serving on {self.url(token=token)} (open it in a browser)"]
            if self.host in LOCAL_HOSTS:
                lines.append(f"from another machine: ssh -L {self.port}:localhost:{self.port} USER@THIS-DEVICE, "
                             f"then open {self.url('localhost', token)} there (or --serve 0.0.0.0:{self.port})")
            return lines
        lan = _lan_address()
        names = [n for n in (lan, socket.gethostname()) if n]
        lines = [f"serving on all interfaces: open {' or '.join(self.url(n, token) for n in names)}"]
        if token is None:
            lines.append("warning: anyone on the network can watch this stream (add --serve-token SECRET)")
        return lines

    def publish(self, image: np.ndarray, record: dict | None = None, state: dict | None = None) -> None:
        self.hub.publish(image, record, state)

    def close(self) -> None:
        self.hub.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=2.0)


class ServeSink:
    """The run loop's sink: every annotated frame and its record go to the page (never blocking)."""

    def __init__(self, server: WebServer) -> None:
        self.server = server

    def write(self, image: np.ndarray, record: dict) -> bool:
        self.server.publish(image, record)
        return True

    def close(self) -> None:
        self.server.close()

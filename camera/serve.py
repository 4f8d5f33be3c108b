"""``--serve``: the live frame, its results and the collect controls as a web page, for headless devices.

One small HTTP server from the standard library (``http.server``, one thread per connection), so a
Jetson needs nothing more. Routes:

- ``/``: the page (``camera/web/index.html``, one static file);
- ``/stream.mjpg``: the annotated frames as MJPEG (``multipart/x-mixed-replace``);
- ``/frame.jpg``: the newest frame as one JPEG;
- ``/result``: the newest record, the same JSON that ``--jsonl`` writes; ``/events``: the same as
  server-sent events; ``/info``: the model, provider, source and mode;
- ``POST /key`` and ``POST /click`` (collect; review takes keys only): the page's keys, buttons and clicks.

Who may ask, and from where: ``serve_access`` (a token, the Host, the origin; refusals close).

The loop never waits for a viewer: ``publish`` only keeps a reference to the newest frame; one
encoder thread turns it into a JPEG at most ``fps`` times a second, and only while someone watches,
so N viewers cost one encode per frame, not N. Each viewer's thread sends the newest JPEG when its
socket is ready: a slow viewer skips frames, a stalled one is dropped after ``CLIENT_TIMEOUT_S``, one
that vanishes ends its thread at the next write.
"""

from __future__ import annotations

import hmac
import json
import queue
import secrets
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np

from ..deploy.errors import UserError
from .serve_access import (
    LOOPBACK_NAMES,
    as_ip,
    banner_lines,
    from_elsewhere,
    host_name,
    lan_address,
    linger,
    parse_address,
    presented_tokens,
    reach,
    url_for,
)
from .serve_hub import FrameHub

PAGE = Path(__file__).with_name("web") / "index.html"
BOUNDARY = "edgevisionframe"
CLIENT_TIMEOUT_S = 10.0  # a viewer that takes no data for this long is dropped
MAX_VIEWERS = 64  # streams at once (MJPEG + events); more get 503


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CLIENT_TIMEOUT_S  # socket timeout: a stalled viewer's write fails instead of hanging
    protocol_version = "HTTP/1.1"
    set_cookie = False  # the token came in the URL or a header: the page's answer sets the cookie
    refused = False  # answered with an error, and closes: what the client still sends is dropped unread

    def finish(self) -> None:
        super().finish()
        if self.refused:
            linger(self.connection)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.refused = True  # http.server's own refusals (a bad request line, PUT...) close the connection too
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args) -> None:  # quiet: the loop's status line says enough
        pass

    # --- routing ----------------------------------------------------------------------------
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if not self._admitted(post=False):
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
        if not self._admitted(post=True):
            return
        inbox = self.server.inbox
        if inbox is None or url.path.lstrip("/") not in self.server.inputs:
            self._send(HTTPStatus.NOT_FOUND, b"nothing to post here\n", "text/plain")
            return
        # Another site open in the user's browser must not save, undo or delete: the page posts JSON (a
        # cross-site form cannot, and a cross-site fetch of JSON needs a preflight this server refuses)
        # from its own origin. Browsers send Origin on every POST; other clients need the token.
        origin = self.headers.get("Origin")
        if (self.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json"
                or (origin is not None and origin.lower() != f"http://{self.headers.get('Host', '').lower()}")):
            self._send(HTTPStatus.FORBIDDEN, b"only the page itself may post here (JSON, same origin)\n",
                       "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= 4096 or "Transfer-Encoding" in self.headers:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > 4096 else HTTPStatus.BAD_REQUEST,
                       b"a post is a JSON body of 1..4096 bytes with its Content-Length\n", "text/plain")
            return
        try:
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

    def _admitted(self, post: bool) -> bool:
        """The Host names this server, the request comes from the page or the address bar, and carries the
        token; otherwise one refusal (which closes the connection)."""
        host = self.headers.get("Host", "")
        name = host_name(host)
        if name is None or not self.server.host_allowed(name):
            self._send(HTTPStatus.FORBIDDEN, f"this server does not answer to Host {host!r} (a DNS-rebinding "
                       f"page?); open the URL edgevision printed, or add --serve-allow-host NAME\n"
                       .encode("utf-8", "replace"), "text/plain")
            return False
        if not post and ("Transfer-Encoding" in self.headers or self.headers.get("Content-Length", "0") != "0"):
            self._send(HTTPStatus.BAD_REQUEST, b"a GET has no body\n", "text/plain")
            return False
        if from_elsewhere(self.headers, post):
            self._send(HTTPStatus.FORBIDDEN, b"only the page itself may ask for this\n", "text/plain")
            return False
        return self._authorised()

    def _authorised(self) -> bool:
        given = presented_tokens(self.path, self.headers, self.server.cookie_name)
        matched = [how for how, value in given if hmac.compare_digest(value, self.server.token)]
        if matched:
            self.set_cookie = "cookie" not in matched
            return True
        said = "a wrong token" if given else "no token"
        self._send(HTTPStatus.UNAUTHORIZED, f"{said}: open the URL printed by edgevision (with ?token=...)\n"
                   .encode(), "text/plain")
        return False

    # --- responses --------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if status >= 400:  # a refused request's body may be unread: never parse it as the next request
            self.send_header("Connection", "close")
            self.refused = True
        self.end_headers()
        self.wfile.write(body)

    def _page(self) -> None:
        headers = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
                   "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
        if self.set_cookie:  # the page's own requests (MJPEG, events, posts) carry the token from now on
            headers["Set-Cookie"] = (f"{self.server.cookie_name}={quote(self.server.token_text, safe='')}; "
                                     "Path=/; HttpOnly; SameSite=Strict")
        self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8", headers)

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
    token: bytes  # UTF-8
    token_text: str
    cookie_name: str
    info: dict
    inbox: queue.Queue | None
    inputs: tuple[str, ...]  # what the page may post: "key", "click"
    names: frozenset[str]  # host names (not addresses) this server answers to
    beyond_loopback: bool

    def host_allowed(self, name: str) -> bool:
        """A Host header's name: a loopback address always; any address when listening beyond loopback (a
        browser sends an address only for a page at that address: no DNS rebinding); else a known name."""
        address = as_ip(name)
        if address is None:
            return name in self.names
        return address.is_loopback or self.beyond_loopback


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
    """The server in a background thread; ``url()`` is what to open. Every route needs ``token`` (random
    when None, as Jupyter's). ``inputs`` are what the page may post ("key", "click"; collect and review)
    into ``inbox``; the run page only watches. ``allow_hosts`` are more names the Host header may carry."""

    def __init__(self, address: str, info: dict, fps: float = 15.0, quality: int = 70, token: str | None = None,
                 inputs: tuple[str, ...] = (), say=None, allow_hosts: tuple[str, ...] = ()) -> None:
        host, port = parse_address(address)
        if token is not None and not token.strip():
            raise UserError("--serve-token is empty (an unset variable?): give a secret, or drop the option "
                            "(a random one is made)")
        token = token if token is not None else secrets.token_urlsafe(24)
        try:
            secret = token.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError("--serve-token is not valid text (bytes that are not UTF-8?): give a secret in "
                            "letters and digits") from None
        if unknown := set(inputs) - {"key", "click"}:
            raise ValueError(f"inputs are 'key' and 'click', got {sorted(unknown)}")
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
        self.host, self.port = host, self.httpd.server_address[1]
        self.bound = self.httpd.server_address[0]  # as the socket resolved it: '0' -> '0.0.0.0'
        self.reach = reach(self.bound)
        self.token = token
        names = {*LOOPBACK_NAMES, *(n.lower().rstrip(".") for n in allow_hosts)}
        if as_ip(host) is None:
            names.add(host.lower().rstrip("."))
        if self.reach != "loopback":  # this machine's own name, and its mDNS name
            me = socket.gethostname().lower()
            names.update((me, f"{me}.local") if "." not in me else (me,))
        httpd = self.httpd
        httpd.hub, httpd.info, httpd.inbox, httpd.inputs = self.hub, info, self.inbox, tuple(inputs)
        httpd.token, httpd.token_text, httpd.cookie_name = secret, token, f"edgevision-{self.port}"
        httpd.names, httpd.beyond_loopback = frozenset(names), self.reach != "loopback"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgevision-serve", daemon=True)
        self._thread.start()
        if say is not None:
            for line in self.banner():
                say(line)

    def url(self) -> str:
        """The URL to open on this machine, with the token."""
        here = self.bound if self.reach != "all" else "::1" if as_ip(self.bound).version == 6 else "127.0.0.1"
        return url_for(here, self.port, self.token)

    def banner(self) -> list[str]:
        lan = lan_address() if self.reach == "all" else None
        return banner_lines(self.host, self.bound, self.port, self.token, lan,
                            socket.gethostname() if self.reach == "all" else None)

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

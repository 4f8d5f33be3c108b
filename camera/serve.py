"""``--serve``: the live frame, its results and the collect controls as a web page, for headless devices.

One small HTTP server from the standard library (``http.server``, one thread per connection), so a
Jetson needs nothing more. Routes:

- ``/``: the page (``camera/web/index.html``, one static file);
- ``/stream.mjpg``: the annotated frames as MJPEG (``multipart/x-mixed-replace``);
- ``/frame.jpg``: the newest frame as one JPEG;
- ``/result``: the newest record, the same JSON that ``--jsonl`` writes; ``/events``: the same as
  server-sent events; ``/info``: the model, provider, source and mode;
- ``POST /key`` and ``POST /click`` (collect; review takes keys only): the page's keys, buttons and clicks.

Who may ask (as Jupyter does it): every route needs the token, random unless ``--serve-token`` gives
one, shown in the printed URL; the page's first visit sets it as an HttpOnly, SameSite=Strict cookie
for its own requests. The Host header must name this server (loopback names, the bound address, this
machine's name when it listens beyond loopback, ``--serve-allow-host`` names): a DNS-rebinding page
cannot use it. A post must be JSON from the page's own origin (Origin, Sec-Fetch-Site). Every refusal
closes the connection, so a body that was not read is never parsed as a second request.

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
import secrets
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote_to_bytes, urlsplit

import cv2
import numpy as np

from ..deploy.errors import UserError

PAGE = Path(__file__).with_name("web") / "index.html"
BOUNDARY = "edgevisionframe"
CLIENT_TIMEOUT_S = 10.0  # a viewer that takes no data for this long is dropped
MAX_VIEWERS = 64  # streams at once (MJPEG + events); more get 503
LOOPBACK_NAMES = ("localhost",)  # and every loopback address (127.0.0.0/8, ::1)
NETWORK_WARNING = ("warning: the page is reachable from the network over plain HTTP: anyone on the network who has "
                   "the URL or sees its traffic (the token travels in it) can watch and use the page; on a network "
                   "you do not trust, serve on 127.0.0.1 and open it through ssh -L")


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


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address (an IPv4-mapped IPv6 one as its IPv4 address), or None for a name."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def reach(bound: str) -> str:
    """Who can connect to a socket bound to the numeric address ``bound`` (as the socket reports it):
    'loopback' (this machine only), 'all' (every interface) or 'network' (one address of this machine)."""
    address = _ip(bound.split("%")[0])
    if address is None:
        raise ValueError(f"a numeric address is expected, got {bound!r}")
    return "loopback" if address.is_loopback else "all" if address.is_unspecified else "network"


def _url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def banner_lines(host: str, bound: str, port: int, token: str | None, lan: str | None = None,
                 hostname: str | None = None) -> list[str]:
    """What to open: ``host`` as the user wrote it, ``bound`` the address the socket listens on; URLs
    name the bound address (or the user's host name), never a spelling like '0' a browser cannot use."""
    where = reach(bound)
    shown = host if any(c.isalpha() for c in host) and ":" not in host else bound
    if where == "loopback":
        return [f"serving on {_url(shown, port, token)} (open it in a browser)",
                f"from another machine: ssh -L {port}:localhost:{port} USER@THIS-DEVICE, then open "
                f"{_url('localhost', port, token)} there (or --serve 0.0.0.0:{port})"]
    if where == "network":
        return [f"serving on {_url(shown, port, token)} (open it in a browser; it listens on {bound} only)",
                NETWORK_WARNING]
    here = "::1" if _ip(bound).version == 6 else "127.0.0.1"
    names = [n for n in (lan, hostname) if n] or [here]
    return [f"serving on all interfaces: open {' or '.join(_url(n, port, token) for n in names)} "
            f"(on this machine: {_url(here, port, token)})", NETWORK_WARNING]


def host_name(header: str) -> str | None:
    """A Host header's name or address, lowercased, without port or brackets; None when malformed."""
    text = header.strip().lower()
    if text.startswith("["):
        name, _, rest = text[1:].partition("]")
        port_ok = rest == "" or (rest[:1] == ":" and rest[1:].isdigit())
        return name if name and port_ok and _ip(name) is not None else None
    name, sep, port = text.rpartition(":")
    if not sep:
        name, port = text, ""
    if (sep and not port.isdigit()) or ":" in name or not name.rstrip("."):
        return None
    return name.rstrip(".")


def check_host_names(names: list[str] | None) -> tuple[str, ...]:
    """``--serve-allow-host`` values (repeated or comma-separated): plain host names as a browser's address
    bar shows them, without scheme, port or path."""
    out = []
    for text in names or ():
        for name in filter(None, (n.strip() for n in text.split(","))):
            parsed = host_name(name)
            if parsed is None or name.count(":") == 1 or any(c in name for c in "/*@?# "):
                raise UserError(f"--serve-allow-host takes a host name (as in the browser's address bar, without "
                                f"http:// or a port), e.g. jetson.lan; got {name!r}")
            out.append(parsed)
    return tuple(out)


def _lan_address() -> str | None:
    """This machine's address on its default route (no packet is sent), for the URL to print."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
    except OSError:
        return None


def _linger(connection: socket.socket) -> None:
    """After a refusal: send our end (FIN), then drop what the client still sends (64 KB, 1 s at most), so
    that closing over its unread body is not a reset that can lose the answer on the way."""
    try:
        connection.shutdown(socket.SHUT_WR)
        connection.settimeout(1.0)
        left, deadline = 65536, time.monotonic() + 1.0
        while left > 0 and time.monotonic() < deadline:
            chunk = connection.recv(min(left, 16384))
            if not chunk:
                return
            left -= len(chunk)
    except OSError:
        pass


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
    set_cookie = False  # the token came in the URL or a header: the page's answer sets the cookie
    refused = False  # answered with an error, and closes: what the client still sends is dropped unread

    def finish(self) -> None:
        super().finish()
        if self.refused:
            _linger(self.connection)

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
        # Fetch metadata (sent by browsers): another site, or another port of this host, may link to the
        # page, never embed, fetch or post to it.
        site = self.headers.get("Sec-Fetch-Site")
        if site not in (None, "same-origin", "none") and (
                post or self.headers.get("Sec-Fetch-Mode") != "navigate"
                or self.headers.get("Sec-Fetch-Dest") not in (None, "document")):
            self._send(HTTPStatus.FORBIDDEN, b"only the page itself may ask for this\n", "text/plain")
            return False
        return self._authorised()

    def _presented(self) -> list[tuple[str, bytes]]:
        """The tokens the request carries, as bytes: the query's (UTF-8), the headers' (the bytes sent), the
        cookie's (percent-encoded UTF-8)."""
        given = []
        for value in parse_qs(urlsplit(self.path).query).get("token", [])[:1]:
            given.append(("query", value.encode("utf-8", "replace")))
        auth = self.headers.get("Authorization", "")
        for value in (self.headers.get("X-Edgevision-Token"), auth[7:] if auth.startswith("Bearer ") else None):
            if value:
                given.append(("header", str(value).encode("latin-1", "replace")))  # http.server read latin-1
        for part in self.headers.get("Cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == self.server.cookie_name and value:
                given.append(("cookie", unquote_to_bytes(value)))
        return given

    def _authorised(self) -> bool:
        given = self._presented()
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
        address = _ip(name)
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
        if _ip(host) is None:
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
        here = self.bound if self.reach != "all" else "::1" if _ip(self.bound).version == 6 else "127.0.0.1"
        return _url(here, self.port, self.token)

    def banner(self) -> list[str]:
        lan = _lan_address() if self.reach == "all" else None
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

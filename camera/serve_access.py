"""Who may use ``--serve`` (as Jupyter does it), apart from the server so each rule reads on its own.

Every route needs the token, random unless ``--serve-token`` gives one, shown in the printed URL; the
page's first visit sets it as an HttpOnly, SameSite=Strict cookie for its own requests. The Host header
must name this server (loopback names, the bound address, this machine's name when it listens beyond
loopback, ``--serve-allow-host`` names): a DNS-rebinding page cannot use it. Another site, or another
port of this host, may only navigate to the page (fetch metadata). Every refusal closes the connection,
so a body that was not read is never parsed as a second request. Whether the page is reachable from
the network is decided from the address the socket listens on, and said in the banner.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import parse_qs, quote, unquote_to_bytes, urlsplit

from ..deploy.errors import UserError

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


def as_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
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
    address = as_ip(bound.split("%")[0])
    if address is None:
        raise ValueError(f"a numeric address is expected, got {bound!r}")
    return "loopback" if address.is_loopback else "all" if address.is_unspecified else "network"


def url_for(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def banner_lines(host: str, bound: str, port: int, token: str | None, lan: str | None = None,
                 hostname: str | None = None) -> list[str]:
    """What to open: ``host`` as the user wrote it, ``bound`` the address the socket listens on; URLs
    name the bound address (or the user's host name), never a spelling like '0' a browser cannot use."""
    where = reach(bound)
    shown = host if any(c.isalpha() for c in host) and ":" not in host else bound
    if where == "loopback":
        return [f"serving on {url_for(shown, port, token)} (open it in a browser)",
                f"from another machine: ssh -L {port}:localhost:{port} USER@THIS-DEVICE, then open "
                f"{url_for('localhost', port, token)} there (or --serve 0.0.0.0:{port})"]
    if where == "network":
        return [f"serving on {url_for(shown, port, token)} (open it in a browser; it listens on {bound} only)",
                NETWORK_WARNING]
    here = url_for("::1" if as_ip(bound).version == 6 else "127.0.0.1", port, token)
    there = " or ".join(url_for(n, port, token) for n in (lan, hostname) if n)
    return [f"serving on all interfaces: open {there} (on this machine: {here})" if there
            else f"serving on all interfaces: open {here} here, or this machine's address elsewhere", NETWORK_WARNING]


def host_name(header: str) -> str | None:
    """A Host header's name or address, lowercased, without port or brackets; None when malformed."""
    text = header.strip().lower()
    if text.startswith("["):
        name, _, rest = text[1:].partition("]")
        port_ok = rest == "" or (rest[:1] == ":" and rest[1:].isdigit())
        return name if name and port_ok and as_ip(name) is not None else None
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


def lan_address() -> str | None:
    """This machine's address on its default route (no packet is sent), for the URL to print."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
    except OSError:
        return None


def linger(connection: socket.socket) -> None:
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


def presented_tokens(path: str, headers, cookie_name: str) -> list[tuple[str, bytes]]:
    """The tokens a request carries, as bytes, each with where it came: the query's (UTF-8), the headers'
    (the bytes sent: http.server decoded them as latin-1), the cookie's (percent-encoded UTF-8)."""
    given = []
    for value in parse_qs(urlsplit(path).query).get("token", [])[:1]:
        given.append(("query", value.encode("utf-8", "replace")))
    auth = headers.get("Authorization", "")
    for value in (headers.get("X-Edgevision-Token"), auth[7:] if auth.startswith("Bearer ") else None):
        if value:
            given.append(("header", str(value).encode("latin-1", "replace")))
    for part in headers.get("Cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == cookie_name and value:
            given.append(("cookie", unquote_to_bytes(value)))
    return given


def from_elsewhere(headers, post: bool) -> bool:
    """Fetch metadata (browsers send it): a request from another site, or another port of this host, which
    may link to the page, never embed, fetch or post to it."""
    site = headers.get("Sec-Fetch-Site")
    return site not in (None, "same-origin", "none") and (
        post or headers.get("Sec-Fetch-Mode") != "navigate" or headers.get("Sec-Fetch-Dest") not in (None, "document"))

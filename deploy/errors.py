"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""

from __future__ import annotations


class Terminated(KeyboardInterrupt):
    """SIGTERM ('kill', systemd stopping a service): outputs are finished as on Ctrl-C; exit code 143."""


class UserError(Exception):
    """A problem with the user's input or machine, with a message that says what to do."""


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def printable(text: str) -> str:
    """``text`` with control characters (ANSI escapes, newlines) written as escapes, for a terminal."""
    return str(text).translate(_CONTROL)


def mask_credentials(text: str) -> str:
    """'rtsp://user:secret@host/x' -> 'rtsp://user:***@host/x' (and a bare 'user@' kept as is)."""
    import re

    return re.sub(r"(?<=://)([^/@:\s]*):[^/@\s]*@", r"\1:***@", str(text))

"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""

from __future__ import annotations

from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM ('kill', systemd stopping a service): outputs are finished as on Ctrl-C; exit code 143."""


EXIT_CODES = {"Ctrl-C": 130, "SIGTERM": 143}  # a run stopped by a signal; a lost live source is 3, bad input 2


class UserError(Exception):
    """A problem with the user's input or machine, with a message that says what to do."""


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def printable(text: str) -> str:
    """``text`` with control characters (ANSI escapes, newlines) written as escapes, for a terminal."""
    return str(text).translate(_CONTROL)


def shell_quote(word: object) -> str:
    """A path (or any word) as it must be typed in a command the user will paste into a shell: quoted
    when it has spaces or shell characters, and a relative path that starts with '-' written as
    './-x', so that no program takes it for an option. Every hint that prints a path or a command uses it."""
    import shlex

    text = str(word)
    return shlex.quote(f"./{text}" if text.startswith("-") else text)


def tool_main(main, name: str) -> int:
    """The ``python -m edgevision...`` entry of a benchmark or tool: as in the CLI, bad input (a video or
    model that is not there) ends in one line naming the tool and exit code 2, not a traceback."""
    import sys

    from .nativelog import quiet_native_logs

    quiet_native_logs()
    try:
        return main()
    except UserError as exc:
        print(f"{name}: error: {printable(str(exc))}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)


def mask_credentials(text: str) -> str:
    """'rtsp://user:secret@host/x' -> 'rtsp://user:***@host/x' (and a bare 'user@' kept as is)."""
    import re

    return re.sub(r"(?<=://)([^/@:\s]*):[^/@\s]*@", r"\1:***@", str(text))


_NOTED: list[list[int]] = []  # the signals noted by each open interrupts_deferred block, innermost last


@contextmanager
def interrupts_deferred(say, step: str):
    """Ctrl-C or SIGTERM inside TensorFlow's C++ code (tracing a graph for tf2onnx, say) can surface as
    a SystemError with a long traceback, or be lost in a numpy function TensorFlow calls; within this
    block the signal is noted, said, and raised as KeyboardInterrupt / Terminated at the next safe
    point (``raise_if_interrupted``) or when the block's step returns, so cleanup runs as usual."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []

    def note(signum: int, frame: object) -> None:
        if not got:
            say(f"stopping when {step} is done (a few seconds)")
        got.append(signum)

    old = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    _NOTED.append(got)
    try:
        yield
    finally:
        _NOTED.pop()  # blocks nest, on the main thread only
        for s, handler in old.items():
            signal.signal(s, handler)
    if got:
        raise _stop(got[0])


def raise_if_interrupted() -> None:
    """At a safe point inside an ``interrupts_deferred`` block (a training batch's end, say): raise the
    Ctrl-C or SIGTERM it has noted now; nothing when none came or outside such a block."""
    if _NOTED and _NOTED[-1]:
        raise _stop(_NOTED[-1][0])


def _stop(signum: int) -> KeyboardInterrupt:
    import signal

    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def os_cause(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: itself, or the cause of a UserError made from one (images.temp_beside turns a
    full disk into a UserError naming the file), so that a caller can still say it in its own words; None for
    any other UserError."""
    import errno

    if isinstance(exc, OSError):
        return exc
    cause = exc.__cause__ if isinstance(exc, UserError) else None
    full = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # only a full disk is reworded; other UserErrors keep their words
    return cause if isinstance(cause, OSError) and cause.errno in full else None

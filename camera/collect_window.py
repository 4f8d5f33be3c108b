"""``edgevision collect``: the OpenCV window around :class:`~.collect.Collector` (events in, view out)."""

from __future__ import annotations

import os
import queue
import time

import cv2

from ..deploy.errors import Terminated, UserError
from ..deploy.images import check_takes_files
from .capture import CaptureOptions
from .collect import KEYS_ENTER, CollectOptions, Collector, display_scale, display_to_source
from .collect_files import dataset_lock
from .review import Reviewer
from .sinks import display_available
from .sources import open_source

TITLE = "edgevision collect"
# The page's key names -> the key codes the collector and reviewer know (X11 codes for the arrows).
WEB_KEYS = {"Enter": 13, "Backspace": 8, "Escape": 27, "Tab": 9, "ArrowLeft": 65361, "ArrowRight": 65363,
            "Delete": 65535, " ": 32}


def check_display() -> None:
    """collect's window needs a display: said before anything slow (a live head's backbone) starts."""
    if not display_available():
        raise UserError("collect needs a window, and there is no display (DISPLAY is unset or OpenCV has no GUI): "
                        "label in a browser with --serve 8080")


class _Window:
    """A fixed-size window (we scale frames ourselves) that queues mouse clicks."""

    def __init__(self, title: str) -> None:
        check_display()
        os.environ.setdefault("QT_LOGGING_RULES", "default.warning=false")
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        self.clicks: list[tuple[int, int]] = []
        cv2.setMouseCallback(title, self._on_mouse)
        self.scale = 1.0

    def _on_mouse(self, event: int, x: int, y: int, flags: int, param: object) -> None:
        if event == cv2.EVENT_LBUTTONDOWN:
            self.clicks.append((x, y))

    def show(self, view) -> int:
        """Show a full-resolution view scaled to fit; return the key pressed (-1 for none)."""
        self.scale = display_scale(view.shape[:2])
        if self.scale < 1.0:
            view = cv2.resize(view, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_AREA)
        cv2.imshow(self.title, view)
        return cv2.waitKeyEx(15)

    def take_clicks(self) -> list[tuple[float, float]]:
        clicks, self.clicks = self.clicks, []
        return [display_to_source(x, y, self.scale) for x, y in clicks]

    def closed(self) -> bool:
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


class WebWindow:
    """The same events as :class:`_Window` (keys, clicks in source pixels), from the page of ``--serve``:
    the view goes to the page as MJPEG, the collector's state (counts, active class...) as events."""

    def __init__(self, server) -> None:
        self.server = server
        self.clicks: list[tuple[float, float]] = []
        self.finished = False

    def show(self, view, state: dict | None = None) -> int:
        self.server.publish(view, state=state)
        try:  # every click waiting, up to the first key: a burst of clicks never holds back a key
            event = self.server.inbox.get(timeout=0.015)
            while event[0] == "click":
                self.clicks.append((event[1], event[2]))
                event = self.server.inbox.get_nowait()
        except queue.Empty:
            return -1
        name = event[1]
        code = WEB_KEYS.get(name, ord(name) if len(name) == 1 else -1)
        if code in (ord("q"), ord("Q")):
            self.finished = True
        return code

    def take_clicks(self) -> list[tuple[float, float]]:
        clicks, self.clicks = self.clicks, []
        return clicks

    def closed(self) -> bool:
        return self.finished

    def close(self) -> None:
        self.server.close()


def collector_state(c: Collector, reviewer: Reviewer | None = None) -> dict:
    """What the page shows beside the frame: names, counts, the active class, the pending points."""
    state = {
        "mode": "review" if reviewer else "collect", "points_mode": c.points_mode, "names": list(c.names),
        "counts": {n: c.count(n) for n in (("",) if c.points_mode else c.names)}, "active": c.active,
        "auto": c.auto, "message": c.message, "frozen": c.frozen is not None, "pending": c.pending,
        "next_point": c.names[len(c.pending)] if c.points_mode and len(c.pending) < len(c.names) else None,
        "saved_this_session": c.saved_this_session,
    }
    if reviewer is not None:
        path = reviewer.current()
        state["review"] = {"index": reviewer.index, "total": len(reviewer.items),
                           "file": path.name if path else None, "label": path.parent.name if path else None}
    return state


def _live_state(live_head) -> dict:
    """The live head's line for the page: what it did last and its answer on the live frame."""
    if live_head is None:
        return {"live_head": None}
    return {"live_head": live_head.message, "live_label": getattr(live_head.result, "label", None)}


def _web_window(serve: dict, mode: str, source: str, say) -> WebWindow:
    from ..deploy.errors import mask_credentials
    from .serve import WebServer
    from .serve_access import check_host_names

    info = {"mode": mode, "source": mask_credentials(source)}
    inputs = ("key",) if mode == "review" else ("key", "click")  # review has nothing to click on
    return WebWindow(WebServer(serve["address"], info, fps=serve["fps"], quality=serve["quality"],
                               token=serve["token"], inputs=inputs, say=say,
                               allow_hosts=check_host_names(serve.get("allow_hosts"))))


def collect(options: CollectOptions, source_text: str, capture: CaptureOptions | None = None,
            serve: dict | None = None, say=None, live_head=None, loop: bool = False) -> Collector:
    """Run the live collection window (or its web page, with ``serve``) until q/Esc, the window closes,
    or the stream ends. With a ``live_head`` (camera/live_head.py) Enter exports it instead of saving
    (``s`` saves). The folder is held for this process alone (:func:`~.collect_files.dataset_lock`); Ctrl-C or
    SIGTERM ends it as q does, noted in the collector's ``stopped_by``."""
    check_takes_files(options.root, f"cannot save into {options.root}")  # before the folder is made
    with dataset_lock(options.root):
        collector = Collector(options)
        if live_head is not None:
            live_head.add_folder_photos(options.root, collector.splits)
        # a bad source fails before a window opens
        with open_source(source_text, realtime=True, options=capture, loop=loop) as source:
            window = _web_window(serve, "collect", source.description, say) if serve else _Window(TITLE)
            try:
                _collect_loop(collector, source, window, serve is not None, live_head)
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (the CLI raises it as Terminated)
                collector.stopped_by = _stopped_by(exc, say)
            finally:
                window.close()
                if live_head is not None:
                    live_head.close()
    return collector


def _stopped_by(exc: KeyboardInterrupt, say) -> str:
    by = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    if say is not None:
        say(f"stopped ({by})")
    return by


def _collect_loop(collector: Collector, source, window, web: bool, live_head) -> None:
    for frame in source:
        keep_going = True
        while True:  # while a frame is frozen for points, events go on without new frames
            now = time.time()
            view = collector.render(frame.image, now)
            if live_head is not None:
                live_head.offer(frame.image)
                live_head.draw(view)
            state = web and collector_state(collector) | _live_state(live_head)
            key = window.show(view, state) if web else window.show(view)
            for x, y in window.take_clicks():
                collector.click(x, y, frame.image)
            if live_head is not None and key in KEYS_ENTER:
                live_head.request_export()
                key = -1
            keep_going = collector.on_key(key, frame.image, now) and not window.closed()
            collector.tick(frame.image, now)
            if live_head is not None:
                live_head.sync({s.path: s.label for s in collector.undo_stack})
            if not keep_going or collector.frozen is None:
                break
        if not keep_going:
            break


def review(options: CollectOptions, serve: dict | None = None, say=None) -> Reviewer:
    """Step through the saved images; d deletes (to the trash), 1..9 relabels, q quits (Ctrl-C and SIGTERM
    as q, noted in the reviewer's ``stopped_by``). The folder is held for this process alone."""
    if not options.root.is_dir():
        raise UserError(f"nothing to review in {options.root}: no such folder")
    with dataset_lock(options.root):
        reviewer = Reviewer(Collector(options))
        if not reviewer.items:
            raise UserError(f"nothing to review in {options.root}")
        window = _web_window(serve, "review", str(options.root), say) if serve else _Window(f"{TITLE}: review")
        try:
            while True:
                view = reviewer.render()
                if view is None:
                    break
                key = (window.show(view, collector_state(reviewer.collector, reviewer)) if serve
                       else window.show(view))
                window.take_clicks()  # review places no points: a click does nothing, and is not kept
                if not reviewer.on_key(key) or window.closed():
                    break
        except KeyboardInterrupt as exc:
            reviewer.stopped_by = _stopped_by(exc, say)
        finally:
            window.close()
    return reviewer

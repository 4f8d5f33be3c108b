"""``edgevision collect``: the OpenCV window around :class:`~.collect.Collector` (events in, view out)."""

from __future__ import annotations

import os
import time

import cv2

from ..deploy.errors import UserError
from .capture import CaptureOptions
from .collect import KEYS_ENTER, CollectOptions, Collector, display_scale, display_to_source
from .review import Reviewer
from .sinks import display_available
from .sources import open_source

TITLE = "edgevision collect"


class _Window:
    """A fixed-size window (we scale frames ourselves) that queues mouse clicks."""

    def __init__(self, title: str) -> None:
        if not display_available():
            raise UserError("collect needs a window, and there is no display (DISPLAY is unset or OpenCV has no GUI)")
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


def collect(options: CollectOptions, source_text: str, capture: CaptureOptions | None = None,
            live_head=None) -> Collector:
    """Run the live collection window until q/Esc, the window closes, or the stream ends. With a
    ``live_head`` (camera/live_head.py) Enter exports it instead of saving (``s`` saves)."""
    collector = Collector(options)
    if live_head is not None:
        live_head.add_folder_photos(options.root, collector.splits)
    with open_source(source_text, realtime=True, options=capture) as source:  # a bad source fails before a window opens
        window = _Window(TITLE)
        try:
            for frame in source:
                keep_going = True
                while True:  # while a frame is frozen for points, events go on without new frames
                    now = time.time()
                    view = collector.render(frame.image, now)
                    if live_head is not None:
                        live_head.offer(frame.image)
                        live_head.draw(view)
                    key = window.show(view)
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
        except KeyboardInterrupt:
            pass
        finally:
            window.close()
            if live_head is not None:
                live_head.close()
    return collector


def review(options: CollectOptions) -> Reviewer:
    """Step through the saved images; d deletes (to the trash), 1..9 relabels, q quits."""
    reviewer = Reviewer(Collector(options))
    if not reviewer.items:
        raise UserError(f"nothing to review in {options.root}")
    window = _Window(f"{TITLE}: review")
    try:
        while True:
            view = reviewer.render()
            if view is None:
                break
            key = window.show(view)
            if not reviewer.on_key(key) or window.closed():
                break
    except KeyboardInterrupt:
        pass
    finally:
        window.close()
    return reviewer

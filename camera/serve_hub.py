"""The newest frame of ``--serve``, its JPEG (made by one thread, only while someone watches) and the newest
record: the loop publishes without ever waiting, each viewer waits here for the next one."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from ..deploy.errors import UserError


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

"""Counting tracked objects (``--count-line``, ``--zone``): lines crossed and polygon zones entered and
left, in and out per label, at each track's bottom-centre (where a person or a hand meets the ground
or the table; DeepStream's nvdsanalytics and supervision's LineZone count the same point).

A line from (x1, y1) to (x2, y2) counts a track as *in* when its point passes from the left of the
line to its right as seen walking from the first end to the second (a line drawn left to right on the
screen: moving down the image), and *out* the other way. Only a crossing between the two ends counts;
a point that touches the line and goes back is not a crossing. A zone counts *in* when a track's point
goes from outside to inside, *out* the other way, and says how many are *inside* now; a point on the
border has not changed sides. A track first seen inside a zone is inside, but has not come *in*.

On a chain the label counted is the second model's answer (thumbs_up on a hand); otherwise the
detector's label.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .draw import frame_scale, put_label
from .errors import UserError
from .tasks.chain import Chained
from .tasks.classify import Classification
from .tasks.detect import Detections
from .track import Tracker

LINE_COLOR, ZONE_COLOR = (0, 215, 255), (255, 160, 40)  # BGR: amber lines, blue zones
_NAME = re.compile(r"^([A-Za-z_][\w.-]{0,31})=(.*)$")


def _numbers(text: str, flag: str) -> tuple[str | None, list[float]]:
    match = _NAME.match(text.strip())
    name, body = (match.group(1), match.group(2)) if match else (None, text)
    try:
        values = [float(v) for v in body.split(",")]
    except ValueError:
        raise UserError(f"{flag} takes numbers separated by commas (pixels of the frame), e.g. "
                        f"{'door=' if flag == '--count-line' else ''}100,400,540,400; got {text!r}") from None
    if not all(np.isfinite(values)):
        raise UserError(f"{flag}: every coordinate must be a finite number, got {text!r}")
    return name, values


@dataclass(frozen=True)
class Line:
    name: str
    xyxy: tuple[float, float, float, float]  # from (x1, y1) to (x2, y2), source pixels

    @classmethod
    def parse(cls, text: str, index: int = 1) -> Line:
        """'x1,y1,x2,y2' or 'NAME=x1,y1,x2,y2' (named line1, line2... when unnamed)."""
        name, values = _numbers(text, "--count-line")
        if len(values) != 4:
            raise UserError(f"--count-line takes 4 numbers x1,y1,x2,y2, got {len(values)} in {text!r}")
        if values[:2] == values[2:]:
            raise UserError(f"--count-line {text!r}: its two ends are the same point")
        return cls(name or f"line{index}", tuple(values))

    def side(self, points: np.ndarray) -> np.ndarray:
        """(n, 2) points -> (n,) cross product: > 0 right of the line (the 'in' side), < 0 left, 0 on it."""
        x1, y1, x2, y2 = self.xyxy
        return (x2 - x1) * (points[:, 1] - y1) - (y2 - y1) * (points[:, 0] - x1)

    def between_ends(self, p: np.ndarray, q: np.ndarray, side_p: float, side_q: float) -> bool:
        """Whether the step p -> q (on either side) crosses the line between its two ends."""
        x1, y1, x2, y2 = self.xyxy
        cross = p + (q - p) * (side_p / (side_p - side_q))  # where the step meets the (endless) line
        d = np.array([x2 - x1, y2 - y1])
        u = float(np.dot(cross - (x1, y1), d) / np.dot(d, d))
        return 0.0 <= u <= 1.0


@dataclass(frozen=True)
class Zone:
    name: str
    polygon: tuple[tuple[float, float], ...]  # source pixels, in order

    @classmethod
    def parse(cls, text: str, index: int = 1) -> Zone:
        """'x,y,x,y,x,y,...' (3 points or more) or 'NAME=x,y,...' (named zone1, zone2... when unnamed)."""
        name, values = _numbers(text, "--zone")
        if len(values) % 2 or len(values) < 6:
            raise UserError(f"--zone takes 3 or more points x,y,x,y,x,y,...; got {len(values)} numbers in {text!r}")
        points = tuple(zip(values[::2], values[1::2]))
        if abs(cv2.contourArea(np.array(points, np.float32))) < 1.0:
            raise UserError(f"--zone {text!r} encloses no area: its points lie on one line")
        return cls(name or f"zone{index}", points)

    def where(self, point: np.ndarray) -> float:
        """+1 inside, -1 outside, 0 on the border."""
        contour = np.array(self.polygon, np.float32).reshape(-1, 1, 2)
        return cv2.pointPolygonTest(contour, (float(point[0]), float(point[1])), False)


class LineCount:
    def __init__(self, line: Line) -> None:
        self.line = line
        self.last: dict[int, tuple[np.ndarray, float]] = {}  # track -> its last point off the line, its side
        self.crossed = {"in": Counter(), "out": Counter()}

    def update(self, ids: np.ndarray, points: np.ndarray, labels: list[str]) -> None:
        for track, point, side, label in zip(ids.tolist(), points, self.line.side(points), labels):
            if side == 0:  # on the line: no side yet
                continue
            before = self.last.get(track)
            self.last[track] = (point, float(side))
            if before is None or (before[1] > 0) == (side > 0):
                continue
            if self.line.between_ends(before[0], point, before[1], float(side)):
                self.crossed["in" if side > 0 else "out"][label] += 1

    def forget(self, live: set[int]) -> None:
        self.last = {k: v for k, v in self.last.items() if k in live}

    def to_dict(self) -> dict:
        return {"in": dict(self.crossed["in"]), "out": dict(self.crossed["out"])}


class ZoneCount:
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.inside_of: dict[int, bool] = {}  # track -> inside (its last state off the border)
        self.crossed = {"in": Counter(), "out": Counter()}
        self.now: Counter = Counter()  # label -> tracks inside on the latest frame

    def update(self, ids: np.ndarray, points: np.ndarray, labels: list[str]) -> None:
        self.now = Counter()
        for track, point, label in zip(ids.tolist(), points, labels):
            where = self.zone.where(point)
            inside = self.inside_of.get(track) if where == 0 else where > 0
            if inside is None:  # first seen on the border
                continue
            before = self.inside_of.get(track)
            self.inside_of[track] = inside
            if inside:
                self.now[label] += 1
            if before is not None and before != inside:
                self.crossed["in" if inside else "out"][label] += 1

    def forget(self, live: set[int]) -> None:
        self.inside_of = {k: v for k, v in self.inside_of.items() if k in live}

    def to_dict(self) -> dict:
        return {"inside": dict(self.now), "in": dict(self.crossed["in"]), "out": dict(self.crossed["out"])}


def bottom_centres(xyxy: np.ndarray) -> np.ndarray:
    """(n, 4) boxes -> (n, 2) the middle of each box's lower edge."""
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]], axis=1).reshape(-1, 2)


def count_labels(result: Detections | Chained) -> list[str]:
    """The label each box is counted under: a chain's second answer when it is a class, else the detector's."""
    det = result.detections if isinstance(result, Chained) else result
    labels = [det.labels[int(c)] for c in det.label_id]
    if isinstance(result, Chained):
        labels = [then.label if isinstance(then, Classification) else label for then, label in zip(result.then, labels)]
    return labels


def _tally(counts: dict) -> str:
    return " ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "0"


class Analytics:
    """Track ids for each frame's boxes, and the counts of the lines and zones: what ``--track``,
    ``--count-line`` and ``--zone`` add to the live loop."""

    def __init__(self, tracker: Tracker, lines: tuple[Line, ...] = (), zones: tuple[Zone, ...] = ()) -> None:
        self.tracker = tracker
        self.lines = [LineCount(line) for line in lines]
        self.zones = [ZoneCount(zone) for zone in zones]
        self._points = np.zeros((0, 2), np.float32)

    def update(self, result: Detections | Chained) -> tuple[Detections | Chained, dict | None]:
        """The result with track ids, and the counts so far (None when nothing is counted)."""
        if not isinstance(result, Detections | Chained):
            raise TypeError(f"tracking needs boxes; got a {type(result).__name__}")
        det = self.tracker.update(result.detections if isinstance(result, Chained) else result)
        result = replace(result, detections=det) if isinstance(result, Chained) else det
        if not (self.lines or self.zones):
            return result, None
        self._points = bottom_centres(det.xyxy)
        labels, live = count_labels(result), self.tracker.live_ids()
        for counter in (*self.lines, *self.zones):
            counter.update(det.track_id, self._points, labels)
            counter.forget(live)
        return result, self.counts()

    def counts(self) -> dict:
        return {**({"lines": {c.line.name: c.to_dict() for c in self.lines}} if self.lines else {}),
                **({"zones": {c.zone.name: c.to_dict() for c in self.zones}} if self.zones else {})}

    def draw(self, frame: np.ndarray) -> None:
        """The lines (with an arrow to their 'in' side), the zones, the counts, each box's counted point."""
        s = frame_scale(frame)
        thick = max(1, int(2 * s))
        for counter in self.lines:
            x1, y1, x2, y2 = counter.line.xyxy
            cv2.line(frame, (int(x1), int(y1)), (int(x2), int(y2)), LINE_COLOR, thick, cv2.LINE_AA)
            mid, d = np.array([(x1 + x2) / 2, (y1 + y2) / 2]), np.array([x2 - x1, y2 - y1])
            normal = np.array([-d[1], d[0]]) / np.hypot(*d) * 20 * s  # points to the 'in' side
            tip = mid + normal
            cv2.arrowedLine(frame, (int(mid[0]), int(mid[1])), (int(tip[0]), int(tip[1])), LINE_COLOR, thick,
                            cv2.LINE_AA, tipLength=0.4)
            c = counter.to_dict()
            put_label(frame, f"{counter.line.name} in: {_tally(c['in'])} | out: {_tally(c['out'])}",
                      (int(mid[0] - 60 * s), int(mid[1] - 8 * s)), LINE_COLOR, 0.45 * s)
        for counter in self.zones:
            polygon = np.array(counter.zone.polygon, np.int32).reshape(-1, 1, 2)
            cv2.polylines(frame, [polygon], True, ZONE_COLOR, thick, cv2.LINE_AA)
            c = counter.to_dict()
            x, y = polygon[:, 0].min(axis=0)
            put_label(frame, f"{counter.zone.name} inside: {_tally(c['inside'])} | in: {_tally(c['in'])} | "
                      f"out: {_tally(c['out'])}", (int(x) + 4, int(y) + int(18 * s)), ZONE_COLOR, 0.45 * s)
        for x, y in self._points:
            cv2.circle(frame, (int(x), int(y)), max(2, int(4 * s)), LINE_COLOR, -1, cv2.LINE_AA)

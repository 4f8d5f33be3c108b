"""Track ids across frames for a detector's boxes (``--track``): ByteTrack's association with a
constant-velocity guess of where each track is now.

Each frame: the confident boxes (score >= ``high_score``) are matched first to every live track, by IoU
with the track's predicted box (same label only) through a linear assignment (``lap.lapjv``, the solver
ByteTrack itself uses); the less confident boxes then get the tracks seen on the previous frame that are
still free, at a stricter IoU, so a spurious weak box never takes a track from a real one. A box left
over starts a new track: every box the model reports gets an id. A track that finds no box is kept for
``max_missed`` frames, moving at its last velocity, so an id survives a missed detection or two.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .errors import UserError
from .tasks.detect import Detections


@dataclass(frozen=True)
class TrackOptions:
    high_score: float = 0.5  # boxes at least this confident are matched first
    match_iou: float = 0.2  # least IoU of a confident box with a track's predicted box
    low_match_iou: float = 0.5  # least IoU for a less confident box (second round)
    max_missed: int = 30  # frames a track is kept without a box (1 s at 30 FPS)

    def __post_init__(self) -> None:
        for name in ("high_score", "match_iou", "low_match_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie within 0..1, got {value}")
        if self.max_missed < 0:
            raise ValueError(f"max_missed must be 0 or more, got {self.max_missed}")


@dataclass
class _Track:
    id: int
    label_id: int
    xyxy: np.ndarray  # (4,) the last box matched, source pixels
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))  # (4,) pixels per frame
    missed: int = 0  # frames since the last match

    def predicted(self) -> np.ndarray:
        return self.xyxy + self.velocity * (self.missed + 1)

    def matched(self, box: np.ndarray) -> None:
        step = (box - self.xyxy) / (self.missed + 1)
        self.velocity = 0.5 * self.velocity + 0.5 * step
        self.xyxy, self.missed = box.astype(np.float32), 0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (n, 4) xyxy boxes against (m, 4) -> (n, m)."""
    a, b = a.reshape(-1, 1, 4), b.reshape(1, -1, 4)
    wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)  # (n, m, 2)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def assign(iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """(row, column) pairs of the assignment with the largest total IoU, each pair at least ``min_iou``
    (and above 0)."""
    import lap

    if iou.size == 0:
        return []
    cost = 1.0 - iou
    _, rows, _ = lap.lapjv(cost.astype(np.float64), extend_cost=True, cost_limit=min(1.0 - min_iou, 1.0 - 1e-6))
    return [(r, int(c)) for r, c in enumerate(rows) if c >= 0 and iou[r, c] >= min_iou and iou[r, c] > 0]


class Tracker:
    """Give each detection a track id that stays with the object from frame to frame."""

    def __init__(self, options: TrackOptions | None = None) -> None:
        try:
            import lap  # noqa: F401
        except ImportError as exc:  # a Jetson install with --no-deps
            raise UserError("--track needs the 'lap' package (the assignment solver): pip install lap") from exc
        self.options = options or TrackOptions()
        self.tracks: list[_Track] = []
        self._next_id = 1

    def live_ids(self) -> set[int]:
        return {t.id for t in self.tracks}

    def update(self, det: Detections) -> Detections:
        """``det`` with ``track_id`` set: one id per box, in the boxes' order."""
        opts, n = self.options, len(det)
        ids = np.full(n, -1, np.int64)
        tracks = self.tracks
        predicted = np.array([t.predicted() for t in tracks], np.float32).reshape(-1, 4)
        iou = iou_matrix(det.xyxy, predicted)  # (n, tracks)
        iou[det.label_id[:, None] != np.array([t.label_id for t in tracks], np.int64)[None, :]] = 0.0
        free_tracks = set(range(len(tracks)))
        high = np.flatnonzero(det.score >= opts.high_score)
        low = np.flatnonzero(det.score < opts.high_score)
        for rows, candidates, min_iou in (
            (high, sorted(free_tracks), opts.match_iou),
            (low, None, opts.low_match_iou),
        ):
            if candidates is None:  # second round: the tracks seen last frame that are still free
                candidates = sorted(j for j in free_tracks if tracks[j].missed == 0)
            for r, c in assign(iou[np.ix_(rows, candidates)], min_iou):
                i, j = int(rows[r]), candidates[c]
                tracks[j].matched(det.xyxy[i])
                ids[i] = tracks[j].id
                free_tracks.discard(j)
        for j in free_tracks:
            tracks[j].missed += 1
        self.tracks = [t for t in tracks if t.missed <= opts.max_missed]
        for i in np.flatnonzero(ids < 0):  # a box no track took: a new object
            self.tracks.append(_Track(self._next_id, int(det.label_id[i]), det.xyxy[i].copy()))
            ids[i] = self._next_id
            self._next_id += 1
        return replace(det, track_id=ids)

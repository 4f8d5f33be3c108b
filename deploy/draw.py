"""Drawing primitives shared by every task's ``draw`` and the camera's HUD: a fixed palette and
text that reads on any background. OpenCV only."""

from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
GREEN = (80, 200, 60)
# A fixed palette (BGR) so a class keeps its colour from frame to frame.
PALETTE = np.array(
    [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
     (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0)],
    dtype=np.uint8,
)


def color_for(index: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in PALETTE[index % len(PALETTE)])


def frame_scale(frame: np.ndarray) -> float:
    """Text and line size relative to a 640-pixel-wide frame."""
    return max(0.4, min(frame.shape[:2]) / 480)


def put_label(frame: np.ndarray, text: str, org: tuple[int, int], color=WHITE, scale: float = 0.6) -> None:
    """Text with a dark backing box, so it reads on any background."""
    thickness = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = org
    x = max(2, min(x, frame.shape[1] - w - 3))  # keep the text inside the frame
    cv2.rectangle(frame, (x - 2, y - h - 4), (x + w + 2, y + base), BLACK, -1)
    cv2.putText(frame, text, (x, y), FONT, scale, color, thickness, cv2.LINE_AA)

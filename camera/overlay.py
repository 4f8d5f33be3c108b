"""Draw results on BGR frames. Results are already in source pixels; nothing is converted here."""

from __future__ import annotations

import cv2
import numpy as np

from ..deploy.results import Classification, Detections, Keypoints, Segmentation

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


def _scale(frame: np.ndarray) -> float:
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


def draw_classification(frame: np.ndarray, result: Classification, max_bars: int = 10) -> None:
    s = _scale(frame)
    put_label(frame, f"{result.label} {result.score:.0%}", (int(10 * s), int(34 * s)), GREEN, 0.9 * s)
    order = np.argsort(-result.probs)[:max_bars]
    bar_w, bar_h, x0 = int(160 * s), int(14 * s), int(10 * s)
    for row, i in enumerate(order):
        y = int((52 + row * 22) * s)
        cv2.rectangle(frame, (x0, y), (x0 + bar_w, y + bar_h), BLACK, -1)
        cv2.rectangle(frame, (x0, y), (x0 + int(bar_w * float(result.probs[i])), y + bar_h), color_for(int(i)), -1)
        put_label(frame, f"{result.labels[i]} {result.probs[i]:.2f}", (x0 + bar_w + 6, y + bar_h - 2), WHITE, 0.45 * s)


def draw_keypoints(frame: np.ndarray, result: Keypoints) -> None:
    s = _scale(frame)
    for i, (name, (x, y)) in enumerate(zip(result.names, result.xy)):
        center = (int(round(x)), int(round(y)))
        cv2.circle(frame, center, max(3, int(6 * s)), color_for(i), -1, cv2.LINE_AA)
        cv2.circle(frame, center, max(3, int(6 * s)), WHITE, 1, cv2.LINE_AA)
        text = name if result.conf is None else f"{name} {result.conf[i]:.2f}"
        put_label(frame, text, (center[0] + int(8 * s), center[1] - int(8 * s)), WHITE, 0.5 * s)


def draw_segmentation(frame: np.ndarray, result: Segmentation, alpha: float = 0.45) -> None:
    if result.class_map.shape != frame.shape[:2]:
        raise ValueError(f"class_map {result.class_map.shape} does not match the frame {frame.shape[:2]}")
    colors = PALETTE[np.arange(len(result.labels)) % len(PALETTE)].copy()
    colors[0] = 0  # class 0 is background: left as it is
    mask = result.class_map > 0
    if mask.any():
        tinted = colors[result.class_map]
        frame[mask] = (frame[mask] * (1 - alpha) + tinted[mask] * alpha).astype(np.uint8)


def replace_background(frame: np.ndarray, result: Segmentation, background: str | np.ndarray) -> None:
    """Where the class map is 0, put a blur of the frame, a colour, or an image (resized to the frame).

    ``background`` is 'blur', an 'R,G,B' colour, or a BGR image array."""
    if result.class_map.shape != frame.shape[:2]:
        raise ValueError(f"class_map {result.class_map.shape} does not match the frame {frame.shape[:2]}")
    keep = result.class_map > 0
    if isinstance(background, np.ndarray):
        fill = cv2.resize(background, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_AREA)
    elif background == "blur":
        k = max(3, (min(frame.shape[:2]) // 12) | 1)  # an odd kernel, about a twelfth of the frame
        fill = cv2.GaussianBlur(frame, (k, k), 0)
    else:
        r, g, b = (int(v) for v in background.split(","))
        fill = np.empty_like(frame)
        fill[:] = (b, g, r)
    frame[~keep] = fill[~keep]


def parse_background(text: str) -> str | np.ndarray:
    """--background: 'blur', 'R,G,B' (0..255 each) or an image file."""
    import re
    from pathlib import Path

    from ..deploy.errors import UserError

    if text == "blur":
        return text
    if re.fullmatch(r"\s*\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}\s*", text):
        if all(0 <= int(v) <= 255 for v in text.split(",")):
            return text
        raise UserError(f"--background colour values must be 0..255, got {text}")
    image = cv2.imread(text) if Path(text).is_file() else None
    if image is None:
        raise UserError(f"--background takes blur, R,G,B or an image file; cannot read {text!r}")
    return image


def draw_detections(frame: np.ndarray, result: Detections, names: list[str] | None = None,
                    text_scale: float = 0.5) -> None:
    """Boxes with label and score; ``names`` overrides the text per box (e.g. a chained result)."""
    s = _scale(frame)
    for i, (box, score, cls) in enumerate(zip(result.xyxy, result.score, result.label_id)):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        color = color_for(int(cls))
        cv2.rectangle(frame, (x0, y0), (x1, y1), color, max(1, int(2 * s)), cv2.LINE_AA)
        text = names[i] if names else f"{result.labels[int(cls)]} {score:.2f}"
        put_label(frame, text, (x0 + 2, max(int(32 * text_scale * s), y0 - 4)), color, text_scale * s)


def draw_result(frame: np.ndarray, result) -> None:
    if isinstance(result, Classification):
        draw_classification(frame, result)
    elif isinstance(result, Keypoints):
        draw_keypoints(frame, result)
    elif isinstance(result, Segmentation):
        draw_segmentation(frame, result)
    elif isinstance(result, Detections):
        draw_detections(frame, result)
    elif hasattr(result, "box_texts"):  # a chained result (deploy.chain.Chained)
        draw_detections(frame, result.detections, result.box_texts(), text_scale=0.8)  # the answer is the point
    else:
        raise TypeError(f"cannot draw a {type(result).__name__}")


def draw_hud(frame: np.ndarray, fps: float, latency_ms: float, provider: str) -> None:
    """FPS, end-to-end latency and the provider, bottom left."""
    s = _scale(frame)
    text = f"{fps:5.1f} FPS  {latency_ms:5.1f} ms  {provider}"
    put_label(frame, text, (int(10 * s), frame.shape[0] - int(10 * s)), WHITE, 0.5 * s)

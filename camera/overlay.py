"""The overlay: each result draws itself (its task's ``draw`` in deploy/tasks/); the camera adds the
HUD. Results are already in source pixels; nothing is converted here."""

from __future__ import annotations

import numpy as np

from ..deploy.draw import WHITE, frame_scale, put_label
from ..deploy.results import AnyResult


def draw_result(frame: np.ndarray, result: AnyResult) -> None:
    """Draw any task's result (the chain's too) on a BGR frame, in place."""
    draw = getattr(result, "draw", None)
    if draw is None:
        raise TypeError(f"cannot draw a {type(result).__name__}")
    draw(frame)


def draw_hud(frame: np.ndarray, fps: float, latency_ms: float, provider: str) -> None:
    """FPS, end-to-end latency and the provider, bottom left."""
    s = frame_scale(frame)
    text = f"{fps:5.1f} FPS  {latency_ms:5.1f} ms  {provider}"
    put_label(frame, text, (int(10 * s), frame.shape[0] - int(10 * s)), WHITE, 0.5 * s)

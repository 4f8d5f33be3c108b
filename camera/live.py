"""The live loop: capture, infer, draw, render, until the stream ends or the user quits."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..deploy.chain import ChainRunner
from ..deploy.providers import short_name
from ..deploy.runner import Runner
from ..deploy.tasks.segment import replace_background
from .overlay import draw_hud, draw_result
from .sinks import Sink
from .sources import Source

STAGES = ("capture_ms", "preprocess_ms", "infer_ms", "decode_ms", "draw_ms", "sink_ms")


@dataclass
class LoopStats:
    frames: int = 0
    seconds: float = 0.0
    stopped_by: str = "end of stream"
    totals_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def mean_ms(self) -> dict[str, float]:
        return {k: v / max(self.frames, 1) for k, v in self.totals_ms.items()}


def run_loop(source: Source, runner: Runner | ChainRunner, sinks: list[Sink], max_frames: int | None = None,
             draw: bool = True, background=None) -> LoopStats:
    """Run ``runner`` on every frame ``source`` hands over and give each sink the frame and a record.

    ``draw`` puts the overlay on the frame (needed for a window or a recording, not for JSONL).
    A sink's ``write`` returning False (the user pressed q) ends the loop.
    """
    stats = LoopStats()
    start = time.perf_counter()
    try:
        _loop(source, runner, sinks, max_frames, draw, stats, background)
    except KeyboardInterrupt:  # Ctrl-C (and SIGTERM, which the CLI turns into it) ends the run cleanly
        stats.stopped_by = "Ctrl-C"
    stats.seconds = time.perf_counter() - start
    return stats


def _loop(source: Source, runner: Runner | ChainRunner, sinks: list[Sink], max_frames: int | None, draw: bool,
          stats: LoopStats, background=None) -> None:
    provider = short_name(runner.report.running)
    fps = 0.0
    last = time.perf_counter()
    for frame in source:
        got = time.perf_counter()
        results, timings = runner.infer([frame.image])
        result = results[0]
        t_draw = time.perf_counter()
        latency_ms = (time.time() - frame.timestamp) * 1e3  # capture to result: stale frames show here
        if draw:
            if background is not None:  # segmentation: the background is replaced instead of tinted
                replace_background(frame.image, result, background)
            else:
                draw_result(frame.image, result)
            draw_hud(frame.image, fps, latency_ms, provider)
        timings = {"capture_ms": (got - last) * 1e3, **timings, "draw_ms": (time.perf_counter() - t_draw) * 1e3}
        record = {
            "frame": frame.index,
            "timestamp": round(frame.timestamp, 6),
            **({"file": frame.name} if frame.name else {}),
            "result": result.to_dict(),
            "timings_ms": {k: round(v, 3) for k, v in timings.items()},
            "stats": {"fps": round(fps, 2), "latency_ms": round(latency_ms, 3), "provider": provider},
        }
        t_sink = time.perf_counter()
        keep_going = all([sink.write(frame.image, record) for sink in sinks])
        now = time.perf_counter()
        timings["sink_ms"] = (now - t_sink) * 1e3
        for key, value in timings.items():
            stats.totals_ms[key] += value
        fps = 1.0 / (now - last) if fps == 0.0 else 0.9 * fps + 0.1 / max(now - last, 1e-9)
        last = now
        stats.frames += 1
        if not keep_going:
            stats.stopped_by = "user"
            break
        if max_frames is not None and stats.frames >= max_frames:
            stats.stopped_by = "--max-frames"
            break

"""Soak benchmark (not a test): ``run`` with --record and --jsonl on a looping source for a long
time; prints the process's resident memory and the latency per minute, so that a leak or a slow
drift shows as a rising column.

    python -m edgevision.camera.bench_soak --model models/thumbs.onnx \\
        --video camera/samples/thumbs_demo.mp4 --minutes 30 --out /tmp/soak
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from ..deploy.errors import tool_main
from .api import load
from .bench import resident_mb
from .live import run_loop
from .record import VideoSink
from .sinks import JsonlSink
from .sources import open_source


class MinuteSink:
    """Collects latency per frame and, once a minute, one row: frames, RSS, latency median and p95."""

    def __init__(self, minutes: float) -> None:
        self.start = time.monotonic()
        self.until = self.start + minutes * 60
        self.rows: list[tuple[int, int, float, float, float]] = []
        self._lat: list[float] = []
        self._minute = 1

    def write(self, image, record: dict) -> bool:
        # capture to result (at camera pace the capture stage is mostly waiting for the next frame)
        self._lat.append(record["stats"]["latency_ms"])
        now = time.monotonic()
        if now - self.start >= self._minute * 60 or now >= self.until:
            lat = sorted(self._lat)
            self.rows.append((self._minute, len(lat), resident_mb(), statistics.median(lat),
                              lat[int(0.95 * (len(lat) - 1))]))
            print(f"{self._minute:>6} {len(lat):>8} {self.rows[-1][2]:>9.1f} {self.rows[-1][3]:>12.2f} "
                  f"{self.rows[-1][4]:>9.2f}", flush=True)
            self._lat, self._minute = [], self._minute + 1
        return now < self.until

    def close(self) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an edgevision .onnx file or a pipeline .json")
    parser.add_argument("--video", required=True, help="a video file, played in a loop")
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    parser.add_argument("--out", type=Path, default=Path("soak"), help="folder for the recording and JSON lines")
    parser.add_argument("--providers", default="cpu", help="execution providers (default cpu)")
    parser.add_argument("--pace", choices=["camera", "fast"], default="camera",
                        help="camera: the clip at its own frame rate, as a camera gives frames (default); fast: as "
                             "fast as it decodes (mind the disk: the recording grows by ~1 GB per 10 minutes)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # an .onnx file or a pipeline .json; as `run` does, threads sleep between camera-paced frames
    runner = load(args.model, providers=args.providers, spin=args.pace == "fast").runner
    minute = MinuteSink(args.minutes)
    sinks = [minute, JsonlSink(args.out / "soak.jsonl", overwrite=True),
             VideoSink(args.out / "soak.mp4", overwrite=True)]
    print(f"soak: {args.model} on {args.video} (looped, {args.pace} pace) for {args.minutes:g} min, "
          f"{getattr(runner, 'first', runner).provider_line}")
    print(f"{'minute':>6} {'frames':>8} {'RSS MB':>9} {'latency ms':>12} {'p95 ms':>9}")
    try:
        with open_source(args.video, loop=True, realtime=args.pace == "camera") as source:
            stats = run_loop(source, runner, sinks, draw=True)
    finally:
        for sink in sinks:
            sink.close()
    rss = [r[2] for r in minute.rows]
    print(f"{stats.frames} frames in {stats.seconds / 60:.1f} min; RSS {rss[0]:.1f} -> {rss[-1]:.1f} MB"
          if rss else "no full minute measured")
    return 0


if __name__ == "__main__":
    raise SystemExit(tool_main(main, "bench_soak"))

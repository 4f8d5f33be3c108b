"""Serve benchmark (not a test): the live loop's FPS with 0, 1 and 20 viewers of ``--serve``, 20 stalled
viewers, and after hundreds of viewers that connect and vanish; the loop process's threads and RSS
before and after. Viewers run in a separate process (as browsers on other machines would), so the
numbers are the loop's own cost.

    python -m edgevision.camera.bench_serve --model models/emotions.onnx \\
        --video camera/samples/thumbs_demo.mp4 --frames 600
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import threading
import time
import urllib.request
from urllib.parse import quote

from ..deploy.errors import tool_main
from ..deploy.runner import Runner, RunnerOptions
from .bench import resident_mb
from .live import run_loop
from .serve import ServeSink, WebServer
from .sources import open_source


def _viewers(port: int, token: str, count: int, mode: str, stop, ready) -> None:
    """In a child process: ``count`` viewers that read the MJPEG stream ('read'), connect and never
    read ('stall'), or take one frame and leave, again and again ('vanish')."""
    path = f"/stream.mjpg?token={quote(token, safe='')}"
    url = f"http://127.0.0.1:{port}{path}"

    def read() -> None:
        with urllib.request.urlopen(url, timeout=30) as r:
            while not stop.is_set():
                if not r.read(65536):
                    return

    def stall() -> None:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        stop.wait()
        s.close()

    def vanish() -> None:  # ten visits a second each: 200 connections a second from 20 viewers
        while not stop.wait(0.1):
            try:
                with urllib.request.urlopen(url, timeout=30) as r:
                    r.read(4096)
            except OSError as exc:  # a 503 (too many viewers) is counted, not fatal
                refused.append(exc)

    refused: list = []
    target = {"read": read, "stall": stall, "vanish": vanish}[mode]
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    ready.set()
    stop.wait()
    for t in threads:
        t.join(timeout=5)
    if refused:
        print(f"  ({len(refused)} visits refused: {refused[0]})", flush=True)


def measure(runner, video: str, server: WebServer, frames: int, viewers: int, mode: str) -> tuple[float, int]:
    stop, ready = mp.Event(), mp.Event()
    child = None
    if viewers:
        child = mp.Process(target=_viewers, args=(server.port, server.token, viewers, mode, stop, ready), daemon=True)
        child.start()
        ready.wait(30)
        time.sleep(0.5)
    with open_source(video, realtime=False, loop=True) as source:
        stats = run_loop(source, runner, [_KeepServing(server)], max_frames=frames)
    stop.set()
    if child is not None:  # its viewers' sockets close with it at once
        child.terminate()
        child.join(timeout=10)
    deadline = time.monotonic() + 5  # the server's viewer threads end when their sockets close
    while server.hub.viewers and time.monotonic() < deadline:
        time.sleep(0.1)
    return stats.fps, server.hub.encoded


class _KeepServing(ServeSink):
    def close(self) -> None:  # the server outlives one measurement
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an edgevision .onnx file")
    parser.add_argument("--video", required=True, help="a video file, played in a loop, as fast as it decodes")
    parser.add_argument("--frames", type=int, default=600, help="frames per measurement")
    parser.add_argument("--providers", default="cpu", help="execution providers (default cpu)")
    parser.add_argument("--storms", type=int, default=3, help="rows of 20 viewers connecting and leaving (RSS trend)")
    args = parser.parse_args(argv)
    runner = Runner(args.model, RunnerOptions(providers=args.providers))
    server = WebServer("127.0.0.1:0", {"mode": "run"}, fps=15, quality=70)
    base_threads, base_rss = threading.active_count(), resident_mb()
    print("each row beside a run with no viewer just before it (this machine's load changes; the ratio is the cost)")
    print(f"{'viewers':<12} {'loop FPS':>9} {'no viewer':>10} {'ratio':>6} {'JPEGs':>6} {'threads after':>14} "
          f"{'RSS after MB':>13} {'load':>5}")
    plan = [(1, "read"), (20, "read"), (20, "stall"), *[(20, "vanish")] * args.storms]
    for viewers, mode in plan:
        alone, _ = measure(runner, args.video, server, args.frames, 0, "read")
        before = server.hub.encoded
        fps, encoded = measure(runner, args.video, server, args.frames, viewers, mode)
        print(f"{f'{viewers} {mode}':<12} {fps:>9.1f} {alone:>10.1f} {fps / alone:>6.2f} {encoded - before:>6} "
              f"{threading.active_count():>14} {resident_mb():>13.1f} {os.getloadavg()[0]:>5.1f}", flush=True)
    print(f"before: {base_threads} threads, {base_rss:.1f} MB")
    server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(tool_main(main, "bench_serve"))

"""Benchmark: the ``edgevision run`` loop against a bare onnxruntime loop over the same video.

    python -m edgevision.camera.bench_run --model models/thumbs.onnx --video camera/samples/thumbs_demo.mp4

Both loops decode the video with OpenCV and run the same model; the bare loop is what a user would
write (onnxruntime's default session options; colour conversion, a linear resize, inference and
argmax, in one thread). ``run`` adds the
spec-driven preprocessing, typed results, per-stage timings and the sinks a headless
``edgevision run --jsonl`` uses. Each is timed ``--repeats`` times, alternating, and the
median FPS is printed with the ratio. This is a benchmark, not a test: numbers depend on
the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import cv2
import numpy as np
import onnxruntime as ort

from ..deploy.errors import tool_main
from ..deploy.providers import ProviderConfig
from ..deploy.runner import Runner, RunnerOptions
from .live import FILE_BATCH, feeding, run_loop
from .sinks import ConsoleSink, JsonlSink
from .sources import open_source


def bare_loop(session: ort.InferenceSession, video: str, input_hw: tuple[int, int], max_frames: int,
              interpolation: int = cv2.INTER_LINEAR) -> float:
    """Frames per second of the plainest loop that gives the same answer."""
    cap = cv2.VideoCapture(video)
    name = session.get_inputs()[0].name
    h, w = input_hw
    frames = 0
    start = time.perf_counter()
    while frames < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(cv2.resize(frame, (w, h), interpolation=interpolation), cv2.COLOR_BGR2RGB)
        probs = session.run(None, {name: rgb[None].astype(np.float32)})[0]
        _ = int(probs.argmax())
        frames += 1
    cap.release()
    return frames / (time.perf_counter() - start)


def edgevision_loop(runner: Runner, video: str, max_frames: int, feed: tuple[bool, int] | None = None) -> float:
    with open_source(video) as source:
        sinks = [JsonlSink(stream=io.StringIO()), ConsoleSink(every_s=1e9, stream=io.StringIO())]
        stats = run_loop(source, runner, sinks, max_frames=max_frames, draw=False, feed=feed)
    return stats.fps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-frames", type=int, default=10_000)
    parser.add_argument("--providers", default="cpu")
    parser.add_argument("--threads", type=int, default=0,
                        help="onnxruntime CPU threads for both loops (0: its default, all cores). 1 leaves the other "
                             "cores free, as a GPU does: then the overlap of decoding and inference shows")
    parser.add_argument("--bare-resize", choices=["linear", "area"], default="linear",
                        help="the bare loop's resize: linear (cheapest, the issue's bar) or area (OpenCV's INTER_AREA)")
    parser.add_argument("--feed", choices=["auto", "inline", "threaded"], default="auto",
                        help="how run reads the file: auto (its own choice), in the loop's thread, or a second one")
    parser.add_argument("--batch", type=int, default=0, help="frames per inference with --feed inline/threaded "
                                                                  "(0: run's choice for that feed)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.max_frames < 1 or args.batch < 0:
        parser.error("--repeats and --max-frames must be 1 or more, --batch 0 or more")

    runner = Runner(args.model, RunnerOptions(providers=args.providers, config=ProviderConfig(threads=args.threads)))
    if runner.spec.kind != "classify":
        parser.error("the bare loop is written for classifiers; give a classify model")
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    bare_session = ort.InferenceSession(args.model, so, providers=list(runner.report.active))
    interpolation = cv2.INTER_LINEAR if args.bare_resize == "linear" else cv2.INTER_AREA
    feed = None
    if args.feed != "auto":
        threaded = args.feed == "threaded"
        feed = (threaded, args.batch or (1 if threaded else FILE_BATCH))
    with open_source(args.video) as source:
        chosen = feed or feeding(source, runner)
    edgevision_loop(runner, args.video, 10, feed)  # warm both up
    bare_loop(bare_session, args.video, runner.spec.input_hw, 10)
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(bare_session, args.video, runner.spec.input_hw, args.max_frames, interpolation))
        ours.append(edgevision_loop(runner, args.video, args.max_frames, feed))
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"model {args.model} on {args.video}, {runner.provider_line}, {args.threads or 'default'} onnxruntime "
          f"threads, {args.repeats} repeats (median)")
    runs = {"bare": ", ".join(f"{x:.0f}" for x in bare), "ours": ", ".join(f"{x:.0f}" for x in ours)}
    print(f"bare onnxruntime loop ({args.bare_resize} resize): {b:7.1f} FPS   (runs: {runs['bare']})")
    print(f"edgevision run loop:   {o:7.1f} FPS   (runs: {runs['ours']})")
    pairs = [x / y for x, y in zip(ours, bare)]
    how = "by a second thread" if chosen[0] else "in line"
    print(f"(run fed {how}, {chosen[1]} frame(s) per inference{'' if feed else ', its own choice'})")
    print(f"run / bare: {statistics.median(pairs):.3f} (median of the paired runs; "
          f"{min(pairs):.3f} to {max(pairs):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(tool_main(main, "bench_run"))

"""The live loop: capture, infer, draw, render, until the stream ends or the user quits."""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..deploy.chain import ChainRunner
from ..deploy.counting import Analytics
from ..deploy.errors import EXIT_CODES, Terminated
from ..deploy.providers import CPU
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
             draw: bool = True, background=None, feed: tuple[bool, int] | None = None,
             analytics: Analytics | None = None) -> LoopStats:
    """Run ``runner`` on every frame ``source`` hands over and give each sink the frame and a record.

    ``draw`` puts the overlay on the frame (needed for a window or a recording, not for JSONL).
    A sink's ``write`` returning False (the user pressed q) ends the loop. ``feed`` (threaded, frames
    per inference) overrides :func:`feeding`'s choice (benchmarks). ``analytics`` (--track, --count-line,
    --zone) gives each box a track id and adds the counts to each record.
    """
    stats = LoopStats()
    start = time.perf_counter()
    try:
        _loop(source, runner, sinks, max_frames, draw, stats, background, feed, analytics)
    except KeyboardInterrupt as exc:  # Ctrl-C (and SIGTERM, which the CLI turns into one) ends the run cleanly
        stats.stopped_by = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    stats.seconds = time.perf_counter() - start
    return stats


# How a file read as fast as it decodes is fed, measured on a 2-core CPU as a share of a bare
# onnxruntime loop's FPS (median of paired runs, 640x480 clip; frames per inference 1 or 2):
#                                      in line 1   in line 2   threaded 1   threaded 2
#   emotions, onnxruntime on 2 cores     0.937       0.999        0.939        0.967
#   thumbs,   onnxruntime on 2 cores     0.867       0.962        0.882        0.976
#   emotions, --threads 1 (a core free)  0.957       0.903        1.084        1.001
# With every core busy inferring, a second thread that prepares the next frame only takes cores from
# onnxruntime, and pairs do more per call; with a core free (--threads 1, or a GPU doing the model) the
# second thread wins. Live and paced sources are always threaded, one frame at a time: the newest frame.
FILE_BATCH = 2


def feeding(source: Source, runner) -> tuple[bool, int]:
    """(threaded, frames per inference) for this source and runner, as measured above."""
    if getattr(source, "live", False) or getattr(source, "realtime", False):
        return True, 1
    first = getattr(runner, "first", runner)  # a chain: its detector decides
    threads = first.options.config.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if first.report.running == CPU and (threads == 0 or threads >= cores):
        return False, FILE_BATCH
    return True, 1


def _loop(source: Source, runner: Runner | ChainRunner, sinks: list[Sink], max_frames: int | None, draw: bool,
          stats: LoopStats, background=None, feed: tuple[bool, int] | None = None, analytics=None) -> None:
    threaded, batch = feed or feeding(source, runner)
    frames = _prepared_frames(source, runner, batch) if threaded else _inline_frames(source, runner, batch)
    try:
        _consume(frames, runner, sinks, max_frames, draw, stats, background, analytics)
    finally:
        frames.close()  # stops and joins the preparing thread, however the loop ended


def _consume(batches, runner, sinks: list[Sink], max_frames: int | None, draw: bool, stats: LoopStats,
             background, analytics: Analytics | None = None) -> None:
    """Run, draw, write: one prepared batch at a time, each frame in the order they come."""
    fps = interval = 0.0  # interval: a moving average of seconds per frame (frames of a batch come together)
    last = time.perf_counter()
    for group, prepared, capture_ms in batches:
        results, batch_timings = runner.run(prepared)
        provider = runner.provider_name  # read each time: a provider that fails at run time is replaced
        share = 1.0 / len(group)  # a batch's times are shared by its frames
        for frame, result in zip(group, results):
            latency_ms = (time.time() - frame.timestamp) * 1e3  # capture to result: stale frames show here
            counts, t_track = None, time.perf_counter()
            if analytics is not None:  # track ids on the boxes, the lines' and zones' counts
                result, counts = analytics.update(result)
            track_ms = (time.perf_counter() - t_track) * 1e3  # counted with decode: it is the result's last step
            t_draw = time.perf_counter()
            if draw:
                if background is not None:  # segmentation: the background is replaced instead of tinted
                    replace_background(frame.image, result, background)
                else:
                    draw_result(frame.image, result)
                if analytics is not None:
                    analytics.draw(frame.image)
                draw_hud(frame.image, fps, latency_ms, provider)
            timings = {"capture_ms": capture_ms * share, **{k: v * share for k, v in batch_timings.items()},
                       "draw_ms": (time.perf_counter() - t_draw) * 1e3}
            if analytics is not None:
                timings["decode_ms"] = timings.get("decode_ms", 0.0) + track_ms
            record = {
                "frame": frame.index,
                "timestamp": round(frame.timestamp, 6),
                **({"file": frame.name} if frame.name else {}),
                "result": result.to_dict(),
                **({"counts": counts} if counts is not None else {}),
                "timings_ms": {k: round(v, 3) for k, v in timings.items()},
                "stats": {"fps": round(fps, 2), "latency_ms": round(latency_ms, 3), "provider": provider},
            }
            t_sink = time.perf_counter()
            keep_going = all([sink.write(frame.image, record) for sink in sinks])
            timings["sink_ms"] = (time.perf_counter() - t_sink) * 1e3
            for key, value in timings.items():
                stats.totals_ms[key] += value
            stats.frames += 1
            if not keep_going:
                stats.stopped_by = "user"
                return
            if max_frames is not None and stats.frames >= max_frames:
                stats.stopped_by = "--max-frames"
                return
        now = time.perf_counter()
        per_frame = (now - last) / len(group)
        interval = per_frame if interval == 0.0 else 0.9 * interval + 0.1 * per_frame
        fps = 1.0 / max(interval, 1e-9)
        last = now


_END = object()


def _groups(source: Source, batch: int):
    """(frames, ms spent reading them): ``batch`` frames at a time, fewer at the end. An error of the
    source (a lost camera) comes after the frames read before it."""
    group: list = []
    started = time.perf_counter()
    try:
        for frame in source:
            group.append(frame)
            if len(group) == batch:
                yield group, (time.perf_counter() - started) * 1e3
                group, started = [], time.perf_counter()
    except GeneratorExit:  # the loop stopped taking frames
        raise
    except BaseException:
        if group:
            yield group, (time.perf_counter() - started) * 1e3
        raise
    if group:
        yield group, (time.perf_counter() - started) * 1e3


def _inline_frames(source: Source, runner, batch: int):
    """(frames, their prepared input, capture ms), read and prepared in the loop's own thread."""
    for group, capture_ms in _groups(source, batch):
        yield group, runner.prepare([f.image for f in group]), capture_ms


def _prepared_frames(source: Source, runner, batch: int = 1):
    """(frames, their prepared input, capture ms) in order, made by a second thread: while the model
    runs on one frame, the next is decoded and resized (OpenCV and onnxruntime release the GIL, so two
    cores both work). Files keep every frame in order (a queue of two); a live source's queue holds only
    the newest prepared frame. Errors of the source (a lost camera) reach the loop unchanged."""
    live = getattr(source, "live", False)
    ready: queue.Queue = queue.Queue(maxsize=1 if live else 2)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                if live:  # a newer frame replaces the one the loop has not taken yet
                    try:
                        ready.get_nowait()
                    except queue.Empty:
                        pass
        return False

    def produce() -> None:
        try:
            for group, capture_ms in _groups(source, batch):
                if not put((group, runner.prepare([f.image for f in group]), capture_ms)):
                    return
            put(_END)
        except BaseException as exc:  # the source's or prepare's: the loop raises it
            put(exc)

    thread = threading.Thread(target=produce, name="edgevision-prepare", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)


def _serve_sink(args, runner, source, say):
    from ..deploy.errors import mask_credentials
    from .serve import ServeSink, WebServer
    from .serve_access import check_host_names

    first = getattr(runner, "first", runner)
    model = first.path.name + (f" -> {runner.then.path.name}" if first is not runner else "")
    info = {"mode": "run", "model": model, "provider": runner.provider_name,
            "source": mask_credentials(source.description), "labels": list(first.spec.labels)}
    return ServeSink(WebServer(args.serve, info, fps=args.serve_fps, quality=args.serve_quality, token=args.serve_token,
                               say=say, allow_hosts=check_host_names(args.serve_allow_host)))


def _analytics(args, runner, say) -> Analytics | None:
    """--track, --count-line and --zone as the loop's Analytics (None without them)."""
    from ..deploy.counting import Line, Zone
    from ..deploy.errors import UserError
    from ..deploy.track import Tracker

    lines = tuple(Line.parse(text, i) for i, text in enumerate(getattr(args, "count_line", None) or [], 1))
    zones = tuple(Zone.parse(text, i) for i, text in enumerate(getattr(args, "zone", None) or [], 1))
    names = [c.name for c in (*lines, *zones)]
    if len(set(names)) < len(names):
        raise UserError(f"each --count-line and --zone needs its own name; got {', '.join(names)}")
    if not (getattr(args, "track", False) or lines or zones):
        return None
    first = getattr(runner, "first", runner)
    if first.spec.kind != "detect":
        flag = "--track" if getattr(args, "track", False) else "--count-line/--zone"
        raise UserError(f"{flag} needs a detection model (or a chain); {first.path.name} is a {first.spec.kind} model")
    if not getattr(args, "track", False):
        say("--count-line/--zone count tracked objects: tracking is on (as with --track)")
    return Analytics(Tracker(), lines, zones)


def run_command(args, open_runner, source_text: str, say, loop: bool | None = None,
                realtime: bool | None = None) -> int:
    """'edgevision run': the runner, the source, the sinks, the loop, the summary; the exit code."""
    from ..deploy.errors import UserError
    from ..deploy.images import check_not_an_input
    from .capture import capture_from_args, check_serve_args
    from .publish import sink_from_args
    from .record import VideoSink
    from .sinks import ConsoleSink, JsonlSink, WindowSink, display_available
    from .sources import open_source, parse_source

    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be 1 or more, got {args.max_frames}")
    check_serve_args(args)
    display = args.display
    if display is None:
        display = display_available()
        if not display:
            say("no display found: running without a window" + ("" if args.serve else
                " (--serve PORT shows it in a browser; --record or --jsonl keep the output)"))
    # In a window or a web page, video files play at their own frame rate; headless, as fast as they decode.
    realtime = (display or args.serve is not None) if realtime is None else realtime
    # Frames paced by a camera or by the clip's own rate leave gaps between runs: the CPU threads sleep in
    # them instead of spinning; files read as fast as they decode keep onnxruntime's spinning (faster).
    paced = realtime
    try:
        paced = paced or parse_source(source_text).live
    except Exception:  # a bad source is said by open_source, below, in its own words
        pass
    runner = open_runner(spin=not paced)
    background = None
    if args.background is not None:
        from ..deploy.tasks.segment import parse_background

        if runner.spec.kind != "segment" or runner.spec.head != "edgevision":
            raise UserError(f"--background needs a segmentation model (edgevision's, a class per pixel); this is a "
                            f"{runner.spec.kind} model{'' if runner.spec.head == 'edgevision' else ' (YOLO)'}")
        background = parse_background(args.background)
    analytics = _analytics(args, runner, say)
    source_path = Path(source_text).expanduser()
    if args.record is not None and args.jsonl is not None and args.record.expanduser() == args.jsonl.expanduser():
        raise UserError(f"--record and --jsonl are both {args.record}: give each its own file")
    first, then = getattr(runner, "first", runner), getattr(runner, "then", None)
    inputs = {"the source": source_path, f"the model {first.path}": first.path}
    if then is not None:
        inputs[f"the model {then.path}"] = then.path
    if getattr(args, "model", None) is not None:  # a pipeline file names the models
        inputs.setdefault(f"the model {args.model}", args.model)
    for flag, out in (("--record", args.record), ("--jsonl", args.jsonl)):
        if out is not None:
            check_not_an_input(out, inputs, flag)
    sinks = []
    try:
        with open_source(source_text, realtime=realtime, loop=args.loop if loop is None else loop,
                         options=capture_from_args(args), reconnect=args.reconnect,
                         stall_timeout_s=args.stall_timeout, reconnect_for_s=args.reconnect_timeout,
                         notice=say) as source:
            say(f"source: {source.description}")
            # The window first: a missing display must fail before any output file exists.
            sinks.append(WindowSink() if display else ConsoleSink())
            publisher = sink_from_args(args, say)  # a broker that refuses the login stops here, before any file
            if publisher is not None:
                sinks.append(publisher)
            if args.jsonl:
                sinks.append(JsonlSink(args.jsonl, overwrite=args.overwrite))
            if args.record:
                sinks.append(VideoSink(args.record, fps=getattr(source, "fps", 0.0) or 30.0, overwrite=args.overwrite,
                                       say=say))
            if args.serve:
                sinks.append(_serve_sink(args, runner, source, say))
            stats = run_loop(source, runner, sinks, max_frames=args.max_frames,
                             draw=display or args.record is not None or args.serve is not None, background=background,
                             analytics=analytics)
            skipped = len(source.skipped)
    finally:
        for sink in sinks:  # outputs are finished however the loop ended (a lost source included)
            sink.close()
    means = stats.mean_ms()
    say(
        f"{stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.1f} FPS; inference {means['infer_ms']:.1f} ms, "
        f"preprocess {means['preprocess_ms']:.1f} ms per frame); stopped by {stats.stopped_by}"
        + (f"; {skipped} unreadable images skipped" if skipped else "")
    )
    for sink in sinks:
        if getattr(sink, "path", None):
            say(f"wrote {sink.path}")
    if stats.frames == 0 and skipped and stats.stopped_by == "end of stream":
        return 1  # image files of which none could be read: as 'predict' (see the README's exit codes)
    return EXIT_CODES.get(stats.stopped_by, 0)

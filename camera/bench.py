"""``edgevision bench``: what a model (or a pipeline file's chain) costs per stage, for each provider and
precision variant.

For every provider asked for (default: each one this onnxruntime build offers) and every
precision file beside the model (``NAME.onnx``, ``NAME.fp16.onnx``, ``NAME.int8.onnx``), it
warms up, then times capture (decoding the source's frames), preprocess, inference, decode and
draw per frame, and reports median and p95 per stage, throughput, and the process's resident
memory after the warm-up (rows run one after another in one process, so the first row is the
cleanest measure of one session). A provider that falls back is reported with the provider that
actually ran.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..deploy.errors import UserError
from ..deploy.onnxmeta import SOURCE_KEY, file_sha256, read_header
from ..deploy.providers import parse_providers, short_name

STAGES = ("capture_ms", "preprocess_ms", "infer_ms", "decode_ms", "draw_ms")
PRECISIONS = ("fp32", "fp16", "int8")


def resident_mb() -> float:
    """This process's resident memory in MB (Linux /proc; 0 where it is not available)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "p95": round(float(np.percentile(values, 95)), 3)}


@dataclass
class BenchResult:
    model: str
    precision: str
    requested: str
    provider: str  # what actually ran
    fell_back: bool
    frames: int
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    throughput_fps: float = 0.0  # preprocess + infer + decode + draw, back to back
    rss_mb: float = 0.0  # process resident memory after this row's warm-up
    timed: bool = True  # False: it fell back to a provider already measured, which is not timed again


def precision_files(model: Path) -> list[tuple[str, Path]]:
    if model.suffix.lower() == ".json":  # a pipeline file: its chain as it names it (float32 files)
        return [("fp32", model)]
    base = model.with_suffix("")
    for p in PRECISIONS[1:]:
        if base.name.endswith(f".{p}"):
            raise UserError(f"give the float32 model ({base.name.removesuffix('.' + p)}.onnx); its variants are found")
    found = [("fp32", model)]
    digest = None
    for p in PRECISIONS[1:]:
        variant = base.with_name(f"{base.name}.{p}.onnx")
        if not variant.is_file():
            continue
        made_from = read_header(variant).metadata.get(SOURCE_KEY)
        digest = digest or file_sha256(model)
        if made_from != digest:  # a variant of an older export, or of another model: its numbers would lie
            print(f"edgevision: {variant.name} was not made from this {model.name} "
                  f"({'no record of its source' if made_from is None else 'another model'}): not measured",
                  file=sys.stderr)
            continue
        found.append((p, variant))
    return found


def load_frames(source: str | None, count: int, options=None) -> tuple[list[np.ndarray], list[float]]:
    """Frames to run on and the time each took to capture (decode). Default: a synthetic 640x480 scene."""
    if source is None:
        rng = np.random.default_rng(0)
        import cv2

        base = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (31, 31), 9)
        return [np.roll(base, 7 * i, axis=1) for i in range(count)], []
    from .sources import open_source

    frames, capture = [], []
    with open_source(source, options=options) as src:
        iterator = iter(src)
        while len(frames) < count:
            t0 = time.perf_counter()
            frame = next(iterator, None)
            if frame is None:
                break
            capture.append((time.perf_counter() - t0) * 1e3)
            frames.append(frame.image)
    if not frames:
        raise UserError(f"{source} gave no frames to benchmark on")
    return frames, capture


def _say(text: str) -> None:
    """Told before a TensorRT engine build, which takes minutes on a Nano and would look like a hang."""
    print(f"edgevision: {text}", file=sys.stderr, flush=True)


def bench_one(model: Path, precision: str, provider: str, frames: list[np.ndarray], capture: list[float],
              warmup: int, measured: set[str] | None = None) -> BenchResult:
    """Time one precision file on one provider; where that provider fell back to one already in
    ``measured`` (e.g. TensorRT and CUDA both to the CPU), say so instead of timing the CPU again."""
    from .api import load
    from .overlay import draw_result

    runner = load(model, providers=provider, notice=_say).runner  # a pipeline file: its chain, margin and threshold
    if measured is not None:
        running = short_name(runner.report.running)
        if running in measured:
            return BenchResult(model=str(model), precision=precision, requested=short_name(provider),
                               provider=running, fell_back=runner.report.fell_back, frames=0, timed=False)
        measured.add(running)
    for i in range(warmup):
        runner.infer([frames[i % len(frames)]])
    memory = resident_mb()
    times: dict[str, list[float]] = {s: [] for s in STAGES if s != "capture_ms"}
    start = time.perf_counter()
    for frame in frames:
        results, timings = runner.infer([frame])
        t0 = time.perf_counter()
        draw_result(frame.copy(), results[0])
        timings["draw_ms"] = (time.perf_counter() - t0) * 1e3
        for key in times:
            times[key].append(timings[key])
    elapsed = time.perf_counter() - start
    stages = {"capture_ms": _stats(capture)} if capture else {}
    stages.update({k: _stats(v) for k, v in times.items()})
    return BenchResult(
        model=str(model), precision=precision, requested=short_name(runner.report.requested[0]),
        provider=short_name(runner.report.running), fell_back=runner.report.fell_back, frames=len(frames),
        stages=stages, throughput_fps=round(len(frames) / elapsed, 2), rss_mb=round(memory, 1),
    )


def bench(model: Path, providers: str | None, source: str | None, frames: int, warmup: int,
          options=None) -> list[BenchResult]:
    import onnxruntime as ort

    if frames < 1 or warmup < 0:
        raise UserError("--frames must be 1 or more and --warmup 0 or more")
    if model.suffix.lower() == ".json" and source is None:  # noise has no face or hand: the second model never runs
        raise UserError(f"{model.name} is a chain: give --source frames that show what its detector finds (a video "
                        "or a folder of photos); on the synthetic scene only the detector would be timed")
    chosen = parse_providers(providers, ort.get_available_providers())
    images, capture = load_frames(source, frames, options)
    results = []
    for precision, path in precision_files(model):
        measured: set[str] = set()
        results += [bench_one(path, precision, provider, images, capture, warmup, measured) for provider in chosen]
    return results


def table(results: list[BenchResult]) -> str:
    head = f"{'precision':<9} {'provider':<22} {'FPS':>7} {'RSS':>8}  " + "  ".join(
        f"{s.removesuffix('_ms'):>17}" for s in STAGES)
    lines = [head, " " * 51 + "  ".join(f"{'median / p95 ms':>17}" for _ in STAGES)]
    for r in results:
        provider = r.provider + (f" (asked {r.requested})" if r.fell_back else "")
        if not r.timed:
            lines.append(f"{r.precision:<9} {r.requested:<22} runs on {r.provider}, measured above: not timed again")
            continue
        cells = "  ".join(
            f"{r.stages[s]['median']:>8.2f} / {r.stages[s]['p95']:<6.2f}" if s in r.stages else f"{'-':>17}"
            for s in STAGES
        )
        lines.append(f"{r.precision:<9} {provider:<22} {r.throughput_fps:>7.1f} {r.rss_mb:>6.0f}MB  {cells}")
    return "\n".join(lines)


def bench_from_args(args) -> int:
    from .capture import capture_from_args

    results = bench(args.model, args.providers, args.source, args.frames, args.warmup, capture_from_args(args))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(f"{args.model}: {max(r.frames for r in results)} frames per run, {args.warmup} warm-up runs; "
              "FPS is preprocess + inference + decode + draw back to back")
        print(table(results))
    return 0

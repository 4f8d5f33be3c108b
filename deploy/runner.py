"""Run an edgevision ONNX model with onnxruntime: frames in, typed results out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import ops, tasks
from .errors import UserError
from .onnxmeta import OnnxHeader, read_header
from .providers import ProviderConfig, ProviderReport, short_name
from .results import Result
from .sessions import ProviderSession
from .spec import SPEC_KEY, SpecError, TaskSpec
from .tasks import yolo


@dataclass(frozen=True)
class RunnerOptions:
    """How to run a model. Bad combinations fail here, when the options are built."""

    providers: str | None = None  # "trt,cuda,cpu" style; None: best available
    require_gpu: bool = False
    config: ProviderConfig = field(default_factory=ProviderConfig)  # per-provider settings
    score_threshold: float | None = None  # detect: override the spec's default
    iou_threshold: float | None = None
    notice: Callable[[str], None] | None = None  # told before slow steps (a TensorRT engine build)

    def __post_init__(self) -> None:
        if self.require_gpu and self.providers is not None:
            names = {p.strip().lower() for p in self.providers.split(",") if p.strip()}
            if names and names <= {"cpu", "cpuexecutionprovider"}:
                raise UserError("--require-gpu cannot be met with --providers cpu: name trt or cuda, or drop one")
        for name in ("score_threshold", "iou_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise UserError(f"{name.replace('_', '-')} must be within 0..1, got {value}")


def read_spec(header: OnnxHeader, path: Path) -> TaskSpec:
    """The spec in the file, or one read from an Ultralytics export's own metadata."""
    text = header.metadata.get(SPEC_KEY)
    if text is None and yolo.is_ultralytics(header.metadata):
        try:
            return yolo.spec_from_metadata(header.metadata)
        except SpecError as exc:
            raise UserError(f"{path} cannot run: {exc}") from exc
    if text is None:
        raise UserError(
            f"{path} has no edgevision spec (metadata key {SPEC_KEY!r}): export it with 'edgevision export', or "
            f"describe it with 'edgevision adopt {path} --task classify|keypoints ...' (Ultralytics exports run as "
            "they are)"
        )
    try:
        return TaskSpec.from_json(text)
    except SpecError as exc:
        raise UserError(f"{path} has a bad edgevision spec: {exc}") from exc


@dataclass(frozen=True)
class Prepared:
    """Frames made ready for a model: the originals, the input batch, where each frame went."""

    frames: list[np.ndarray]
    batch: np.ndarray  # (n, h, w, 3) float32
    placements: list[ops.Placement]
    preprocess_ms: float


class Runner:
    """An onnxruntime session plus the spec that says how to feed it and read it."""

    def __init__(self, model_path: str | Path, options: RunnerOptions | None = None) -> None:
        self.path = Path(model_path)
        self.options = options or RunnerOptions()
        self.header = read_header(self.path)
        self.spec = read_spec(self.header, self.path)
        o = self.options
        self.sessions = ProviderSession(self.path, o.providers, o.config, self.spec.input_hw, o.require_gpu, o.notice)
        if self.options.require_gpu and not self.report.on_gpu:
            raise UserError(f"--require-gpu: no GPU provider could be used ({self.report.line()})")
        try:
            self._check_io()
        except UnicodeDecodeError as exc:  # names in the graph that are not UTF-8: a damaged file
            raise UserError(f"{self.path} has input or output names that are not text: the file is damaged") from exc
        self._dry_run()
        self.sessions.refresh()  # the report is what the dry run ran on, not what was asked for
        if self.options.require_gpu and not self.report.on_gpu:
            raise UserError(f"--require-gpu: no GPU provider could be used ({self.report.line()})")

    @property
    def session(self) -> ort.InferenceSession:
        return self.sessions.session

    @property
    def report(self) -> ProviderReport:
        return self.sessions.report

    def _check_io(self) -> None:
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise UserError(f"{self.path} has {len(inputs)} inputs; edgevision models take one image batch")
        shape = inputs[0].shape  # (n, h, w, 3) or (n, 3, h, w), dims may be symbolic
        self.input_name = inputs[0].name
        nchw = self.spec.layout == "NCHW"
        channels = (shape[1] if nchw else shape[3]) if len(shape) == 4 else None
        if len(shape) != 4 or (isinstance(channels, int) and channels != 3):
            want = "NCHW (n, 3, h, w)" if nchw else "NHWC (n, h, w, 3)"
            raise UserError(f"{self.path} input must be {want} as its spec says, got {shape}")
        hw = tuple(shape[2:4] if nchw else shape[1:3])
        if all(isinstance(d, int) for d in hw) and hw != self.spec.input_hw:
            raise UserError(f"{self.path} input is {hw[0]}x{hw[1]} but its spec says {self.spec.input_hw}")
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.output_names = tasks.output_names(self.spec.kind, [o.name for o in self.session.get_outputs()],
                                                 self.spec.head)
        if inputs[0].type != "tensor(float)":
            raise UserError(f"{self.path} input must be float32 pixels, got {inputs[0].type}")

    def _dry_run(self) -> None:
        """One run on a blank frame: a model whose outputs disagree with its spec fails here, at load,
        not at the first frame of a live run."""
        blank = np.zeros((*self.spec.input_hw, 3), np.uint8)
        try:
            self.infer([blank])
        except ValueError as exc:
            raise UserError(f"{self.path}'s outputs do not match its spec: {exc}") from exc
        except Exception as exc:  # onnxruntime's own errors (a shape the graph cannot take, say)
            raise UserError(f"{self.path} fails on a blank {self.spec.input_hw[1]}x{self.spec.input_hw[0]} frame: "
                            f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}"
                            ) from exc

    @property
    def provider_line(self) -> str:
        return self.report.line()

    @property
    def provider_name(self) -> str:
        """The provider that runs, in a word (the overlay's and the JSONL's)."""
        return short_name(self.report.running)

    def prepare(self, frames_bgr: list[np.ndarray]) -> Prepared:
        """The CPU half before inference (colour, resize, scale): a pipelined loop runs it for the next
        frame while the model works on this one."""
        t0 = time.perf_counter()
        batch, placements = ops.preprocess(frames_bgr, self.spec)
        return Prepared(frames_bgr, batch, placements, (time.perf_counter() - t0) * 1e3)

    def run(self, prepared: Prepared) -> tuple[list[Result], dict[str, float]]:
        """Inference and decoding of prepared frames -> (one result per frame, stage timings in ms)."""
        batch = prepared.batch
        t1 = time.perf_counter()
        # a fixed batch, or at most max_batch frames (TensorRT's profile ends there): larger batches in chunks
        step = self.fixed_batch or self.options.config.max_batch
        if len(batch) > step or (self.fixed_batch is not None and len(batch) != self.fixed_batch):
            chunks = [self.sessions.run(self.output_names, {self.input_name: batch[i : i + step]})
                      for i in range(0, len(batch), step)]
            outputs = [np.concatenate(parts) for parts in zip(*chunks)]
        else:
            outputs = self.sessions.run(self.output_names, {self.input_name: batch})
        t2 = time.perf_counter()
        results = tasks.decode(outputs, self.spec, prepared.placements, score_threshold=self.options.score_threshold,
                               iou_threshold=self.options.iou_threshold)
        t3 = time.perf_counter()
        timings = {
            "preprocess_ms": prepared.preprocess_ms,
            "infer_ms": (t2 - t1) * 1e3,
            "decode_ms": (t3 - t2) * 1e3,
        }
        return results, timings

    def infer(self, frames_bgr: list[np.ndarray]) -> tuple[list[Result], dict[str, float]]:
        """BGR frames of any size -> (one result per frame, stage timings in ms)."""
        return self.run(self.prepare(frames_bgr))

    def __call__(self, frame_bgr: np.ndarray) -> Result:
        """One frame -> its result."""
        return self.infer([frame_bgr])[0][0]


def model_info(path: Path, notice: Callable[[str], None] | None = None) -> dict:
    """A model's spec, inputs, outputs, opsets and size, and which providers load it here (``info``);
    ``notice`` is told before a TensorRT engine is built (minutes on a Nano)."""
    runner = Runner(path, RunnerOptions(providers="cpu"))
    session, header = runner.session, runner.header
    info = {
        "file": str(path),
        "size_bytes": Path(path).stat().st_size,
        "spec": json.loads(runner.spec.to_json()),
        "spec_from": "the file's edgevision spec" if SPEC_KEY in header.metadata else
                     f"Ultralytics {header.metadata.get('version', '')} metadata".replace("  ", " "),
        "ir_version": header.ir_version,
        "opsets": header.opsets,
        "producer": header.producer,
        "inputs": [{"name": i.name, "shape": i.shape, "type": i.type} for i in session.get_inputs()],
        "outputs": [{"name": o.name, "shape": o.shape, "type": o.type} for o in session.get_outputs()],
        "providers_compiled_in": ort.get_available_providers(),
        "providers_that_load": {},  # provider -> true, or why it does not load for this model here
        "onnxruntime": ort.__version__,
    }
    for provider in ort.get_available_providers():
        report = Runner(path, RunnerOptions(providers=provider, notice=notice)).report
        info["providers_that_load"][provider] = True if not report.fell_back else report.reason
    return info

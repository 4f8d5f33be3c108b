"""The Python API: ``edgevision.load(path)`` -> a :class:`Model` you call on a BGR frame, or stream
over any source that ``edgevision run`` takes. The CLI is a thin layer over this module.

    import edgevision
    model = edgevision.load("models/thumbs.onnx")
    result = model(frame)                      # a typed result (Classification, Detections, ...)
    result.to_dict()                           # the JSON that 'edgevision predict' prints
    for frame, result in model.stream("0"):   # webcam 0, a video, a folder, rtsp://...
        ...
    chain = edgevision.load("models/hands.onnx", then="models/fingers.onnx")

A pipeline file (``*.json``: ``{"model": "hands.onnx", "then": "fingers.onnx", "crop_margin":
0.15, "score_threshold": 0.25}``, paths relative to the file) loads a chain from one argument, here
and in ``--model``; flags and keyword arguments override its numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..deploy.chain import ChainRunner
from ..deploy.errors import UserError
from ..deploy.nativelog import quiet_native_logs
from ..deploy.providers import ProviderConfig, profile_batch
from ..deploy.results import AnyResult
from ..deploy.runner import Runner, RunnerOptions
from ..deploy.spec import SpecError, parse_json
from ..deploy.tasks.chain import DEFAULT_MARGIN
from .capture import CaptureOptions
from .sources import open_source

PIPELINE_KEYS = {"model", "then", "crop_margin", "score_threshold", "notes"}


@dataclass(frozen=True)
class Pipeline:
    """A detector and the classifier that answers on each of its boxes, named in one small file."""

    model: Path
    then: Path | None = None
    crop_margin: float | None = None
    score_threshold: float | None = None  # the detector's operating threshold in this chain


def read_pipeline(path: str | Path) -> Pipeline:
    """A pipeline file: JSON with ``model`` and optional ``then`` and ``crop_margin``; paths relative to it."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a pipe would wait for a writer forever
        raise UserError(f"cannot read the pipeline file {path}: it is not a regular file")
    try:
        data = parse_json(path.read_text(encoding="utf-8"), "it")
    except (OSError, UnicodeDecodeError, SpecError) as exc:  # SpecError: not JSON, or nested past the parser
        raise UserError(f"cannot read the pipeline file {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), str) or not data["model"].strip():
        raise UserError(f"{path}: a pipeline file is a JSON object with a \"model\" path (and \"then\")")
    unknown = sorted(set(data) - PIPELINE_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown pipeline keys {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(PIPELINE_KEYS))})")
    then = data.get("then")
    if then is not None and (not isinstance(then, str) or not then.strip()):
        raise UserError(f"{path}: \"then\" must be a model path")
    numbers = {}
    for key in ("crop_margin", "score_threshold"):
        value = data.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise UserError(f"{path}: \"{key}\" must be a number")
        numbers[key] = None if value is None else float(value)
    return Pipeline(path.parent / data["model"], path.parent / then if then else None, **numbers)


class Model:
    """A loaded model (or a detector -> classifier chain): call it on frames, or stream a source."""

    def __init__(self, runner: Runner | ChainRunner, path: Path) -> None:
        self.runner, self.path = runner, path

    @property
    def spec(self):
        """The (first) model's TaskSpec: kind, input size, labels."""
        return self.runner.spec

    @property
    def kind(self) -> str:
        """'classify', 'keypoints', 'segment', 'detect', or 'chain' for a detector with --then."""
        return "chain" if isinstance(self.runner, ChainRunner) else self.runner.spec.kind

    @property
    def provider(self) -> str:
        """Which execution provider runs the model, in words (e.g. 'running on CPU')."""
        return self.runner.provider_line

    def __call__(self, frame_bgr: np.ndarray) -> AnyResult:
        """One BGR uint8 frame (h, w, 3) -> its typed result, in the frame's pixels."""
        return self.predict([frame_bgr])[0]

    def predict(self, frames_bgr: list[np.ndarray]) -> list[AnyResult]:
        """A batch of BGR frames of any sizes -> one result each."""
        for frame in frames_bgr:
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3):
                raise ValueError(f"frames must be uint8 BGR arrays (h, w, 3), got {getattr(frame, 'shape', frame)!r}")
        return self.runner.infer(list(frames_bgr))[0]

    def stream(self, source: str | int, *, max_frames: int | None = None, loop: bool = False,
               realtime: bool = False, **camera) -> Iterator[tuple[np.ndarray, AnyResult]]:
        """(frame, result) for every frame of ``source``: '0', '/dev/video1', 'csi://0', a video, an image,
        a folder, or an rtsp:// / http:// URL. Live sources give the newest frame; files every frame
        (``realtime`` paces a video at its frame rate). ``camera``: width, height, fps, fourcc, flip (as
        the CLI's camera controls). The source is closed when the loop ends."""
        with open_source(str(source), realtime=realtime, loop=loop, options=CaptureOptions(**camera)) as frames:
            for n, frame in enumerate(frames, start=1):
                yield frame.image, self(frame.image)
                if max_frames is not None and n >= max_frames:
                    break


def load(path: str | Path, then: str | Path | None = None, *, providers: str | None = None,
         require_gpu: bool = False, fp16: bool = True, trt_workspace_gb: float = 1.0, device: int = 0,
         cudnn_algo: str = "HEURISTIC", threads: int = 0, score_threshold: float | None = None,
         iou_threshold: float | None = None, crop_margin: float | None = None,
         notice: Callable[[str], None] | None = None, spin: bool = True, batch: int | None = None) -> Model:
    """Load an edgevision ONNX model, or a pipeline file, ready to run.

    ``then``: a classifier that answers on each box of a detector (a chain); ``providers``: e.g.
    'trt,cuda,cpu' (default: the best this onnxruntime has); ``require_gpu``: fail rather than run on
    the CPU; ``fp16``/``trt_workspace_gb``: TensorRT; ``device``/``cudnn_algo``: CUDA; ``threads``: CPU;
    ``score_threshold``/``iou_threshold``: detectors (default: the model's own); ``notice``: told before
    slow steps such as a TensorRT engine build; ``spin=False``: the CPU threads sleep between frames (for
    a loop paced by a camera: much less CPU, the same results; a chain never spins, see below); ``batch``: the
    most frames you pass at
    once (TensorRT's shape profile covers up to max(16, batch), at most 64; larger batches are split)."""
    quiet_native_logs()  # OpenCV's and FFmpeg's own lines stay out of the terminal (deploy/nativelog.py)
    path = Path(path)
    if path.suffix.lower() == ".json":
        pipeline = read_pipeline(path)
        if then is not None:
            raise UserError(f"{path} is a pipeline file that names its own models: drop --then")
        then = pipeline.then
        crop_margin = pipeline.crop_margin if crop_margin is None else crop_margin
        score_threshold = pipeline.score_threshold if score_threshold is None else score_threshold
        path = pipeline.model
    # A chain's two sessions take turns on the same cores: a session whose threads spin after its run
    # slows the other one down (measured, 2-core CPU, faces.onnx -> emotions.onnx back to back: 46 ms a
    # frame with both spinning, 29 ms with neither; nose: 79 -> 36 ms), so a chain never spins.
    spin = spin and then is None
    options = RunnerOptions(
        providers=providers, require_gpu=require_gpu, score_threshold=score_threshold, iou_threshold=iou_threshold,
        config=ProviderConfig(fp16=fp16, trt_workspace_gb=trt_workspace_gb, device_id=device,
                              cudnn_conv_algo_search=cudnn_algo, threads=threads, spin=spin,
                              max_batch=profile_batch(batch)),
        notice=notice,
    )
    runner = Runner(path, options)
    if then is None:
        if crop_margin is not None:
            raise UserError("--crop-margin is for --then (a chain): add --then MODEL.onnx, or drop it")
        return Model(runner, path)
    second = Runner(Path(then), options)
    return Model(ChainRunner(runner, second, DEFAULT_MARGIN if crop_margin is None else crop_margin), path)

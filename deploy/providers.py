"""Execution providers: names, defaults, options, and an honest account of what loaded.

onnxruntime lists every provider its wheel was built with, then quietly falls back to the
CPU when a GPU provider cannot load, printing a wall of red lines (some through its C++
logger, some with Python's print). Sessions are therefore created with stdout and stderr
captured at the file-descriptor level; what the user sees is one line. The sessions themselves
are made in sessions.py.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .onnxmeta import file_sha256, graph_inputs

TRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEFAULT_ORDER = (TRT, CUDA, CPU)
GPU_PROVIDERS = frozenset({TRT, CUDA})
ALIASES = {
    "trt": TRT,
    "tensorrt": TRT,
    "cuda": CUDA,
    "gpu": CUDA,
    "cpu": CPU,
}
SHORT_NAMES = {TRT: "TensorRT", CUDA: "CUDA", CPU: "CPU"}


def short_name(provider: str) -> str:
    return SHORT_NAMES.get(provider, provider.removesuffix("ExecutionProvider"))


def parse_providers(text: str | None, available: list[str]) -> list[str]:
    """``"trt,cuda,cpu"`` (aliases or full names) -> full provider names, in order.

    None means the default order (TensorRT, CUDA, CPU) limited to what this onnxruntime
    build offers. Naming a provider this build lacks is an error, not a silent skip.
    """
    if text is None:
        chosen = [p for p in DEFAULT_ORDER if p in available]
        return chosen or [CPU]
    by_lower = {p.lower(): p for p in available} | {p.lower(): p for p in DEFAULT_ORDER}
    chosen = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        name = ALIASES.get(raw.lower()) or by_lower.get(raw.lower())
        if name is None:
            known = ", ".join(sorted(set(ALIASES)))
            raise UserError(f"unknown provider {raw!r}: use one of {known}, or a full onnxruntime provider name")
        if name not in available:
            hint = " (install onnxruntime-gpu; see the README's Jetson notes)" if name in GPU_PROVIDERS else ""
            raise UserError(
                f"{short_name(name)} is not in this onnxruntime build (it offers "
                f"{', '.join(short_name(p) for p in available)}){hint}"
            )
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise UserError("--providers is empty: name at least one of trt, cuda, cpu")
    return chosen


CUDNN_ALGO_SEARCH = ("HEURISTIC", "DEFAULT", "EXHAUSTIVE")
# The most frames one inference takes (TensorRT's profile covers batches 1 to this; larger batches are
# split): a chain's box limit per frame, and the backbone's batch.
DEFAULT_MAX_BATCH = 16
MAX_PROFILE_BATCH = 64  # a bigger profile costs build time and memory (a Nano shares 4 GB): split beyond


def profile_batch(batch: int | None) -> int:
    """The largest batch TensorRT's profile covers for callers that send ``batch`` frames at once."""
    return min(max(DEFAULT_MAX_BATCH, batch or 0), MAX_PROFILE_BATCH)


@dataclass(frozen=True)
class ProviderConfig:
    """Every provider option in one place. Bad values fail here, when the config is built."""

    fp16: bool = True  # TensorRT: FP16 kernels where they are faster
    trt_workspace_gb: float = 1.0  # TensorRT: scratch memory for the engine builder (a Nano shares 4 GB)
    device_id: int = 0  # CUDA and TensorRT
    cudnn_conv_algo_search: str = "HEURISTIC"  # EXHAUSTIVE is onnxruntime's default: slow first frames
    threads: int = 0  # CPU intra-op threads; 0: onnxruntime's default
    # CPU threads spin between runs (onnxruntime's default): back-to-back runs (files, folders, benchmarks)
    # are ~40% faster on a small model; a loop paced by a camera turns it off (see session_plan).
    spin: bool = True
    cache_root: Path | None = None  # default: $EDGEVISION_CACHE or ~/.cache/edgevision
    max_batch: int = DEFAULT_MAX_BATCH  # frames per inference at most (TensorRT's profile); more are split

    def __post_init__(self) -> None:
        if not 0 < self.trt_workspace_gb <= 64:
            raise UserError(f"--trt-workspace-gb must be within 0..64, got {self.trt_workspace_gb}")
        if self.device_id < 0:
            raise UserError(f"--device must be 0 or more, got {self.device_id}")
        if self.cudnn_conv_algo_search not in CUDNN_ALGO_SEARCH:
            raise UserError(f"--cudnn-algo must be one of {', '.join(CUDNN_ALGO_SEARCH)}, "
                            f"got {self.cudnn_conv_algo_search!r}")
        if not 1 <= self.max_batch <= 1024:
            raise UserError(f"the batch must be 1 to 1024 frames, got {self.max_batch}")
        cores = os.cpu_count() or 1
        if not 0 <= self.threads <= 4 * cores:
            raise UserError(f"--threads must be 0 (automatic) to {4 * cores} (4 per core here), got {self.threads}")


def tensorrt_version() -> str:
    """The TensorRT library's version number as it reports it, or 'none'."""
    import ctypes

    for name in ("libnvinfer.so", "libnvinfer.so.10", "libnvinfer.so.8"):
        try:
            return str(ctypes.CDLL(name).getInferLibVersion())
        except (OSError, AttributeError):
            continue
    return "none"


def jetson_model() -> str:
    """The Jetson board's name from the device tree ('NVIDIA Jetson Orin Nano ...'), or '' elsewhere."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            text = Path(path).read_text(errors="replace").strip("\x00\n ")
        except OSError:
            continue
        if "jetson" in text.lower() or "nvidia" in text.lower():
            return text
    return ""


def gpu_name() -> str:
    """The GPU's model name (a Jetson's board name), or 'none'; read from files, no subprocess."""
    for path in ("/proc/device-tree/model", *sorted(glob.glob("/proc/driver/nvidia/gpus/*/information"))):
        try:
            text = Path(path).read_text(errors="replace").strip("\x00\n ")
        except OSError:
            continue
        if path.endswith("information"):
            m = re.search(r"Model:\s*(.+)", text)
            if m:
                return m.group(1).strip()
        elif "nvidia" in text.lower() or "jetson" in text.lower():
            return text
    return "none"


WSL_GPU_DEVICE = Path("/dev/dxg")  # WSL2 shows its GPU only as this device, with no /proc/driver/nvidia


def no_gpu_here() -> bool:
    """True where no NVIDIA GPU can be seen: no Jetson device tree, no NVIDIA driver in /proc, not WSL2."""
    return gpu_name() == "none" and not WSL_GPU_DEVICE.exists()


def cache_key(model_digest: str, ort_version: str, trt_version: str, gpu: str) -> str:
    """An engine built for other bytes, another onnxruntime or TensorRT, or another GPU is never reused."""
    return hashlib.sha256("\n".join((model_digest, ort_version, trt_version, gpu)).encode()).hexdigest()[:16]


def is_qdq(model_path: Path) -> bool:
    """True for a model quantized to Q/DQ form (an edgevision .int8.onnx): TensorRT needs INT8 enabled
    to build it. The op names are plain strings in the protobuf, so no onnx package is needed."""
    return b"QuantizeLinear" in Path(model_path).read_bytes()


def cache_root(root: Path | None = None) -> Path:
    return Path(root or os.environ.get("EDGEVISION_CACHE", Path.home() / ".cache" / "edgevision"))


def engine_cache_dir(model_path: Path, root: Path | None = None, precision: str = "") -> Path:
    """Where TensorRT keeps this model's engines on this machine; ``precision`` (the builder's fp16/int8
    flags and the shape profile) is part of the key, so an FP32 engine is never reused for FP16."""
    import onnxruntime as ort

    digest = file_sha256(model_path) + precision
    key = cache_key(digest, ort.__version__, tensorrt_version(), gpu_name())
    return cache_root(root) / "trt" / f"{model_path.stem}-{key}"


def timing_cache_dir(root: Path | None = None) -> Path:
    """One TensorRT timing cache for every model (a later build reuses the tactics timed for earlier
    ones); it belongs to one TensorRT version on one GPU."""
    import onnxruntime as ort

    return cache_root(root) / "trt" / f"timing-{cache_key('', ort.__version__, tensorrt_version(), gpu_name())}"


@dataclass(frozen=True)
class ShapeProfile:
    """TensorRT's optimization profile for an image input: batches 1 to ``max_batch`` at one height and
    width. Without one, TensorRT builds its engine for the first shape it sees and builds it again
    (minutes on a Nano) each time a batch or size leaves the range seen so far."""

    input_name: str
    dims: tuple[int | str, ...]  # the graph's (n, h, w, c): ints where fixed, names where free
    hw: tuple[int, int]  # the height and width the model is fed at
    max_batch: int

    channels_first: bool = False  # (n, 3, h, w): a model from PyTorch (an Ultralytics export)

    def shape(self, batch: int) -> tuple[int, ...]:
        n, h, w, c = (self.dims[0], *self.dims[2:], self.dims[1]) if self.channels_first else self.dims
        n, h, w, c = (n if isinstance(n, int) else batch, h if isinstance(h, int) else self.hw[0],
                      w if isinstance(w, int) else self.hw[1], c if isinstance(c, int) else 3)
        return (n, c, h, w) if self.channels_first else (n, h, w, c)

    def options(self) -> dict[str, str]:
        """The trt_profile_* options (onnxruntime 1.15+), e.g. ``image:1x224x224x3``."""
        def text(batch: int) -> str:
            return f"{self.input_name}:" + "x".join(str(d) for d in self.shape(batch))

        return {"trt_profile_min_shapes": text(1), "trt_profile_opt_shapes": text(1),
                "trt_profile_max_shapes": text(self.max_batch)}


def shape_profile(model_path: Path, hw: tuple[int, int] | None, max_batch: int) -> ShapeProfile | None:
    """The profile for a model with one NHWC (or NCHW) image input whose batch (or size) is free; None when every
    dim is fixed (nothing to cover) or the input cannot be named in TensorRT's option syntax."""
    inputs = graph_inputs(model_path)
    if len(inputs) != 1 or len(inputs[0][1]) != 4:
        return None
    name, dims = inputs[0]
    if all(isinstance(d, int) for d in dims) or not name or any(ch in name for ch in ",:"):
        return None
    channels_first = dims[1] == 3 and dims[3] != 3  # (n, 3, h, w); an NHWC input has its 3 last
    fixed_hw = dims[2:4] if channels_first else dims[1:3]
    if hw is None and not all(isinstance(d, int) for d in fixed_hw):
        return None
    return ShapeProfile(name, dims, tuple(hw or fixed_hw), max_batch, channels_first)


def provider_options(providers: list[str], model_path: Path, config: ProviderConfig | None = None,
                     profile: ShapeProfile | None = None) -> list[dict[str, str]]:
    """Options per provider: TensorRT gets FP16 (unless turned off), INT8 for Q/DQ models, a workspace,
    the shape profile, an engine cache per model, precision and profile, and the shared timing cache.
    Each name is in 1.31.1's libonnxruntime_providers_tensorrt.so (checked with ``strings``); the
    trt_profile_* shapes came in onnxruntime 1.15 and trt_timing_cache_path in 1.17 (older wheels refuse
    the session: "Invalid TensorRT EP option"), so JetPack 6's wheels (1.18 to 1.25) have them all."""
    config = config or ProviderConfig()
    options: list[dict[str, str]] = []
    for name in providers:
        if name == TRT:
            int8 = is_qdq(model_path)
            shapes = profile.options() if profile else {}
            key = f"fp16={config.fp16},int8={int8}" + "".join(f",{v}" for v in shapes.values())
            cache = engine_cache_dir(model_path, config.cache_root, key)
            options.append(
                {
                    "device_id": str(config.device_id),
                    "trt_fp16_enable": "True" if config.fp16 else "False",
                    # Q/DQ models carry their own scales: INT8 on, no calibration table
                    "trt_int8_enable": "True" if int8 else "False",
                    "trt_int8_use_native_calibration_table": "False",
                    "trt_max_workspace_size": str(int(config.trt_workspace_gb * (1 << 30))),
                    "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": "True",
                    "trt_timing_cache_path": str(timing_cache_dir(config.cache_root)),
                    **shapes,
                }
            )
        elif name == CUDA:
            options.append({"device_id": str(config.device_id),
                            "cudnn_conv_algo_search": config.cudnn_conv_algo_search})
        else:
            options.append({})
    return options


def make_cache_folders(trt_options: dict[str, str]) -> str:
    """Create the engine and timing cache folders, parents too (TensorRT's constructor makes one level
    only and throws "Failed to create directory" when the parent is missing). When that fails, turn the
    caches off in ``trt_options`` and return why (the engine is then built on every start)."""
    for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
        folder = trt_options.get(key)
        if folder is None:
            continue
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            for enable, path in (("trt_engine_cache_enable", "trt_engine_cache_path"),
                                 ("trt_timing_cache_enable", "trt_timing_cache_path")):
                trt_options[enable] = "False"
                trt_options.pop(path, None)
            return f"cannot create {folder}: {exc.strerror or exc}"
    return ""


def needs_engine_build(cache: Path) -> bool:
    """True when an engine cache folder holds no TensorRT engine yet."""
    return not any(cache.glob("*.engine"))


@contextlib.contextmanager
def captured_fds() -> Iterator[list[str]]:
    """Capture what is written to fds 1 and 2 (C++ logs) and to sys.stdout/sys.stderr (Python prints),
    which are not always fds 1 and 2 (pytest, notebooks, apps that swap them)."""
    lines: list[str] = []
    py_out = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(py_out), contextlib.redirect_stderr(py_out):
                yield lines
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            lines.extend(py_out.getvalue().splitlines())
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ORT_PREFIX = re.compile(r"^\s*\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
_SOURCE_PLACE = re.compile(r"^\S+\.(?:cc|cpp|h|hpp):\d+\s+")
_CAUSES = ("Failed to create directory", "TensorRT EP failed", "Failed to load library", "CUDA failure",
           "CUDNN failure", "out of memory")


def error_cause(text: str) -> str:
    """The cause in an onnxruntime error, without its '[ONNXRuntimeError] : 1 : FAIL :' and source-place
    prefixes (``/onnxruntime_src/...cc:123 void onnxruntime::...(...) Failed to create directory X``)."""
    text = _ANSI.sub("", text).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _SOURCE_PLACE.sub("", _ORT_PREFIX.sub("", line))
    for cause in _CAUSES:
        at = line.find(cause)
        if at > 0:
            return line[at:][:200]
    return line[:200] or "no reason given by onnxruntime"


_EP_ERROR = re.compile(r"EP Error:?\s+(.+?)(?:\s+when using \[| using \[|$)")


def load_failure_reason(log_lines: list[str]) -> str:
    """The most useful short reason in onnxruntime's provider-loading noise."""
    text = _ANSI.sub("", "\n".join(log_lines))
    missing = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", text)
    if missing:
        return f"{missing.group(1)} not found"
    if "Please install TensorRT libraries" in text:
        return "TensorRT libraries not found"
    for line in text.splitlines():
        ep = _EP_ERROR.search(line)
        if ep and ep.group(1).strip(" *"):  # "EP Error <cause> when using [...]": the cause, not the banner
            return error_cause(ep.group(1))
    for line in text.splitlines():
        line = line.strip(" *")
        if line and line != "EP Error" and not line.startswith("Falling back to"):
            return error_cause(line)
    return "no reason given by onnxruntime"


NO_GPU = "no NVIDIA GPU on this machine"


@dataclass(frozen=True)
class ProviderReport:
    requested: tuple[str, ...]
    active: tuple[str, ...]  # what the session actually runs on, in priority order
    reason: str  # why the first requested provider is not active ("" when it is)
    asked: bool = True  # the providers were named (--providers, --require-gpu), not the default order
    note: str = ""  # something the user should know about a provider that runs (an engine cache that is off)

    @property
    def running(self) -> str:
        return self.active[0] if self.active else CPU

    @property
    def fell_back(self) -> bool:
        return bool(self.requested) and self.running != self.requested[0]

    @property
    def on_gpu(self) -> bool:
        return self.running in GPU_PROVIDERS

    def line(self) -> str:
        """The one line the user sees about providers. With the default order on a machine without an
        NVIDIA GPU, why TensorRT did not load is not news: it says only where the model runs."""
        running = short_name(self.running)
        note = f" ({self.note})" if self.note else ""
        if not self.fell_back or (not self.asked and self.reason.startswith(NO_GPU)):
            return f"running on {running}{note}"
        asked = short_name(self.requested[0])
        return f"running on {running}: {asked} could not be used ({self.reason}){note}"

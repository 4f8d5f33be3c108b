"""onnxruntime sessions made our way: TensorRT's cache folders made first, our own fallback, CUDA preloaded.

onnxruntime's Python wrapper (``onnxruntime_inference_collection.py``, read in 1.31.1) also has a
fallback of its own: when creating a session raises (TensorRT's constructor throws, say, "Failed
to create directory"), ``InferenceSession.__init__`` prints an "EP Error" banner to stdout and
retries on ``_fallback_providers`` (CUDA and the CPU, or the CPU alone) with
``provider_options=None``; ``Session.run`` does the same on an ``EPFail`` at run time. Both drop
every option we set (CUDA then runs on device 0 with cuDNN EXHAUSTIVE). So sessions are made with
``enable_fallback=0`` (read by ``__init__`` as ``kwargs.get("enable_fallback", 1)``; older wrappers
ignore unknown keywords and fall back anyway, which the banner in the captured output betrays),
``disable_fallback()`` is called on every session, and the fallback is done here, in the order
asked for, with our options (:func:`create_session`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import EPFail

from . import providers as P
from .errors import UserError
from .providers import (
    CPU,
    GPU_PROVIDERS,
    NO_GPU,
    TRT,
    ProviderConfig,
    ProviderReport,
    captured_fds,
    error_cause,
    load_failure_reason,
    make_cache_folders,
    needs_engine_build,
    parse_providers,
    provider_options,
    shape_profile,
    short_name,
)

_preloaded = False


def preload_cuda_libraries(ort) -> None:
    """onnxruntime-gpu's CUDA and TensorRT provider libraries have no RUNPATH (1.31.1: readelf shows none),
    so CUDA and cuDNN installed from pip (``onnxruntime-gpu[cuda,cudnn]``) are found only once
    ``onnxruntime.preload_dlls()`` (1.21+) has loaded them; once per process, where it exists. It prints
    what it cannot load: the caller captures that."""
    global _preloaded
    preload = getattr(ort, "preload_dlls", None)
    if _preloaded or preload is None:
        return
    _preloaded = True
    try:
        preload()
    except Exception:  # a missing folder or library: the provider's own load then says why
        pass


def wrapper_fell_back(log_lines: list[str]) -> bool:
    """True when onnxruntime's Python wrapper printed its "EP Error ... Falling back" lines: it retried
    on its own fallback providers without our options (wrappers that ignore ``enable_fallback=0``)."""
    return any("Falling back to" in line for line in log_lines) and any("EP Error" in line for line in log_lines)


@dataclass(frozen=True)
class SessionPlan:
    """Everything a session is made from, kept so that a provider failing at run time can be replaced by
    the next one asked for, with its options."""

    model: str  # the ONNX file's path
    session_options: object  # onnxruntime.SessionOptions
    providers: tuple[str, ...]
    options: tuple[dict[str, str], ...]
    asked: bool = True
    note: str = ""


def session_plan(ort, model: Path, requested: list[str], config: ProviderConfig, input_hw: tuple[int, int] | None,
                 asked: bool, notice: Callable[[str], None] | None = None) -> SessionPlan:
    """Session options and per-provider options for ``model`` (fed at ``input_hw``); for TensorRT the shape
    profile, and the cache folders made first (``notice`` is told before an engine build, and why the
    cache is off when its folder cannot be made). ``doctor`` probes with this too."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    # onnxruntime's CPU threads spin between runs by default: a loop paced by a camera then burns ~40% of
    # a core doing nothing (measured: thumbs.onnx at 12 FPS, 39% of a core spinning, 9% not), so paced
    # loops turn it off; back-to-back runs keep it (emotions: 2.95 ms a run spinning, 4.2 ms not).
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.spin else "0")
    if config.threads:
        so.intra_op_num_threads = config.threads
    profile = shape_profile(model, input_hw, config.max_batch) if TRT in requested else None
    opts = provider_options(requested, model, config, profile)
    note = ""
    if TRT in requested and P.tensorrt_version() != "none":  # TensorRT can load
        trt = opts[requested.index(TRT)]
        problem = make_cache_folders(trt)
        if problem:
            note = f"TensorRT engine not cached: {problem}"
        if notice and (problem or needs_engine_build(Path(trt["trt_engine_cache_path"]))):
            where = (f"not cached ({problem}), so it is built on every start" if problem
                     else f"it is cached in {trt['trt_engine_cache_path']}")
            notice(f"building a TensorRT engine for {model.name} (first run on this machine; can take minutes on "
                   f"a Nano); {where}")
    return SessionPlan(str(model), so, tuple(requested), tuple(opts), asked, note)


def create_session(ort, plan: SessionPlan, skip: int = 0, reason: str = "") -> tuple[object, ProviderReport]:
    """A session on ``plan.providers[skip:]`` with their options; when the one at the head throws while
    the session is made, the next is tried with its options, and the CPU last (as onnxruntime always
    keeps it). onnxruntime's own fallback is off (see the module's docstring). ``reason``: why the
    providers before ``skip`` are not used. Raises UserError when even the CPU cannot load the model."""
    providers, options = list(plan.providers), [dict(o) for o in plan.options]
    if CPU not in providers:
        providers, options = [*providers, CPU], [*options, {}]
    if any(p in GPU_PROVIDERS for p in providers[skip:]) and not P.no_gpu_here():
        with captured_fds():
            preload_cuda_libraries(ort)
    reasons = [reason] if reason else []
    for start in range(skip, len(providers)):
        last = start == len(providers) - 1
        with captured_fds() as log:
            try:
                session = ort.InferenceSession(plan.model, plan.session_options, providers=providers[start:],
                                               provider_options=options[start:], enable_fallback=0)
                error = None
            except Exception as exc:  # onnxruntime raises several unrelated types here
                session, error = None, exc
        if session is None:
            text = str(error).strip()
            if last:
                first = text.splitlines()[0][:300] if text else type(error).__name__
                raise UserError(f"onnxruntime could not load {plan.model}: {first}")
            reasons.append(error_cause(text) if text else type(error).__name__)
            continue
        if wrapper_fell_back(log) and not last:  # it retried without our options: retry ourselves, with them
            reasons.append(load_failure_reason(log))
            continue
        session.disable_fallback()  # no retry at run time without our options either
        break
    active = tuple(session.get_providers()) or (CPU,)
    if not reasons and active[0] != providers[start]:  # it did not load, silently (a missing library)
        reasons.append(load_failure_reason(log))
    why = reasons[0] if reasons and active[0] != providers[0] else ""
    if why and providers[0] in GPU_PROVIDERS and P.no_gpu_here():  # the missing library is not the news
        why = f"{NO_GPU}; {why}"
    return session, ProviderReport(plan.providers, active, why, plan.asked, plan.note)


class ProviderSession:
    """An onnxruntime session on the ``providers`` asked for ("trt,cuda"; None: the best available), fed at
    ``input_hw`` (TensorRT's shape profile, where the graph's size is free), its report, and what it was
    made from: when its provider fails at run time (``EPFail``), the next provider asked for takes over
    with its own options, and the report says so. One UserError line when the model cannot load."""

    def __init__(self, path: Path, providers: str | None, config: ProviderConfig, input_hw: tuple[int, int] | None,
                 require_gpu: bool = False, notice: Callable[[str], None] | None = None) -> None:
        requested = parse_providers(providers, ort.get_available_providers())
        asked = providers is not None or require_gpu  # not merely the default order
        self.path, self.notice = Path(path), notice
        self.plan = session_plan(ort, self.path, requested, config, input_hw, asked, notice)
        self.session, self.report = create_session(ort, self.plan)

    def run(self, output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        while True:  # each fallback moves down the providers asked for, ending at the CPU
            try:
                return self.session.run(output_names, feed)
            except EPFail as exc:
                if not self._fall_back(exc):
                    raise

    def refresh(self) -> None:
        """Read again what the session runs on (after the dry run: what it really ran on)."""
        active = tuple(self.session.get_providers())
        if active and active != self.report.active:
            self.report = replace(self.report, active=active)

    def _fall_back(self, exc: Exception) -> bool:
        """Replace a provider that failed at run time by the next one asked for; False when none is left."""
        failed = self.report.running
        if failed == CPU or failed not in self.plan.providers:
            return False
        reason = f"failed at run time: {error_cause(str(exc))}"
        skip = self.plan.providers.index(failed) + 1  # past the last one asked for: the CPU
        self.session, report = create_session(ort, self.plan, skip, reason if failed == self.plan.providers[0]
                                              else self.report.reason)
        self.report = report
        if self.notice:
            self.notice(f"{self.path.name}: {short_name(failed)} {reason}; running on {short_name(report.running)} "
                        "from now on")
        return True

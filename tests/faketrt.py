"""A stand-in for onnxruntime's InferenceSession on a machine with an NVIDIA GPU, TensorRT and CUDA.

It behaves like onnxruntime-gpu 1.31.1 where our code depends on it (read in the installed
``onnxruntime/capi/onnxruntime_inference_collection.py`` and the TensorRT provider's library
strings) and computes on the CPU:

- the TensorRT provider's constructor makes its engine and timing cache folders one level deep
  and throws "Failed to create directory" when the parent is missing;
- ``InferenceSession.__init__`` falls back when making the session throws, unless
  ``enable_fallback=0`` is given (``old_wrapper=True``: a wrapper that ignores it), printing its
  "EP Error" banner to stdout and retrying on CUDA and the CPU (or the CPU alone) without options;
- ``run`` raises ``EPFail`` for a shape outside TensorRT's explicit profile ("failed to call
  setInputShape"), and without a profile counts an engine build each time a shape leaves the range
  seen so far; on an ``EPFail`` it falls back the same way unless ``disable_fallback()`` was called;
- every session made is recorded with the providers and options it was given.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import EPFail

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
_REAL = ort.InferenceSession


def parse_shapes(text: str) -> dict[str, tuple[int, ...]]:
    """'image:1x32x48x3' -> {'image': (1, 32, 48, 3)} (TensorRT's profile syntax)."""
    shapes = {}
    for part in text.split(","):
        name, dims = part.rsplit(":", 1)
        shapes[name] = tuple(int(d) for d in dims.split("x"))
    return shapes


class FakeGpu:
    """``monkeypatch.setattr(ort, "InferenceSession", FakeGpu())``; its records are what the tests read."""

    def __init__(self, old_wrapper: bool = False, trt_fails_at_run: bool = False,
                 trt_throws: str | None = None) -> None:
        self.old_wrapper, self.trt_fails_at_run, self.trt_throws = old_wrapper, trt_fails_at_run, trt_throws
        self.made: list[tuple[list[str], list[dict]]] = []  # (providers, options) of every session made
        self.builds = 0  # TensorRT engine builds (one per shape range left without a profile)
        self.trt_batches: list[int] = []  # the batch sizes TensorRT ran

    def __call__(self, model, sess_options=None, providers=None, provider_options=None, **kwargs):
        return FakeSession(self, model, sess_options, providers or [CPU], provider_options, kwargs)

    def options_for(self, provider: str) -> list[dict]:
        return [opts[names.index(provider)] for names, opts in self.made if provider in names]


class FakeSession:
    def __init__(self, gpu: FakeGpu, model, so, providers, provider_options, kwargs) -> None:
        self._gpu, self._model, self._so = gpu, model, so
        self._fallback_enabled = gpu.old_wrapper or int(kwargs.get("enable_fallback", 1)) == 1
        # onnxruntime 1.31.1's _create_inference_session: TensorRT falls back to CUDA only if CUDA was asked too
        self._fallback = [CUDA, CPU] if TRT in providers and CUDA in providers else [CPU]
        try:
            self._create(list(providers), provider_options)
        except (ValueError, RuntimeError) as exc:
            if not self._fallback_enabled:
                raise
            print("*************** EP Error ***************")
            print(f"EP Error {exc} when using {providers}")
            print(f"Falling back to {self._fallback} and retrying.")
            print("****************************************")
            self._create(self._fallback, None)
            self._fallback_enabled = False

    def _create(self, providers: list[str], options) -> None:
        options = [dict(o) for o in options] if options else [{} for _ in providers]
        self._real = _REAL(self._model, self._so, providers=[CPU])
        names = {i.name for i in self._real.get_inputs()}
        self._profile = None
        if providers[0] == TRT:
            trt = options[0]
            if self._gpu.trt_throws:
                raise RuntimeError(self._gpu.trt_throws)
            for enable, key in (("trt_engine_cache_enable", "trt_engine_cache_path"),
                                ("trt_timing_cache_enable", "trt_timing_cache_path")):
                if trt.get(enable) == "True" and key in trt:
                    folder = Path(trt[key])
                    if not folder.parent.is_dir():  # create_directory: one level only
                        raise RuntimeError(
                            "[ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/onnxruntime/core/providers/tensorrt/"
                            "tensorrt_execution_provider.cc:1795 onnxruntime::TensorrtExecutionProvider::"
                            f"TensorrtExecutionProvider(const onnxruntime::TensorrtExecutionProviderInfo&) Failed to "
                            f"create directory {folder}")
                    folder.mkdir(exist_ok=True)
            keys = ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")
            if any(k in trt for k in keys):
                shapes = [parse_shapes(trt[k]) for k in keys]  # all three, or TensorRT refuses them
                if any(set(s) != names for s in shapes):
                    raise RuntimeError("[TensorRT EP] Profile shapes validation failed. Make sure the provider "
                                       "options 'trt_profile_min_shapes', 'trt_profile_max_shapes' and "
                                       "'trt_profile_opt_shapes' have same input name and number of profile.")
                self._profile = shapes
        self._providers = providers + ([CPU] if CPU not in providers else [])
        self._seen: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self._gpu.made.append((providers, options))

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def disable_fallback(self) -> None:
        self._fallback_enabled = False

    def run(self, output_names, feed, run_options=None):
        try:
            self._on_trt(feed)
        except EPFail as err:
            if not self._fallback_enabled:
                raise
            print(f"EP Error: {err!s} using {self._providers}")
            print(f"Falling back to {self._fallback} and retrying.")
            self._create(self._fallback, None)
            self._fallback_enabled = False
        return self._real.run(output_names, feed, run_options)

    def _on_trt(self, feed) -> None:
        if self._providers[0] != TRT:
            return
        if self._gpu.trt_fails_at_run:
            raise EPFail("[ONNXRuntimeError] : 11 : EP_FAIL : TensorRT EP execution context enqueue failed.")
        for name, value in feed.items():
            shape = tuple(value.shape)
            if self._profile is not None:
                low, _, high = (p[name] for p in self._profile)
                if any(not lo <= d <= hi for lo, d, hi in zip(low, shape, high)):
                    raise EPFail("[ONNXRuntimeError] : 11 : EP_FAIL : TensorRT EP failed to call "
                                 f"nvinfer1::IExecutionContext::setInputShape() for input '{name}'")
                if not self._seen:
                    self._gpu.builds += 1
                    self._seen[name] = (low, high)
            else:  # the range seen so far; a shape outside it rebuilds the engine
                low, high = self._seen.get(name, (shape, shape))
                grown = (tuple(map(min, low, shape)), tuple(map(max, high, shape)))
                if name not in self._seen or grown != (low, high):
                    self._gpu.builds += 1
                self._seen[name] = grown
            self._gpu.trt_batches.append(shape[0])

    def __getattr__(self, name):  # get_inputs, get_outputs, get_session_options, ...
        return getattr(self._real, name)

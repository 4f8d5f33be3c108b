"""doctor probes TensorRT as a run opens it (issue 27), on the fake GPU session of tests/faketrt.py."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort
import pytest
from edgevision.camera import doctor
from edgevision.deploy import providers as P
from faketrt import FakeGpu


class GpuOrt:
    """The onnxruntime module as doctor sees it on a machine with a GPU, TensorRT and CUDA."""

    SessionOptions = ort.SessionOptions

    def __init__(self, session=None) -> None:
        self.InferenceSession = session or FakeGpu()

    @staticmethod
    def get_available_providers():
        return [P.TRT, P.CUDA, P.CPU]


@pytest.fixture
def gpu_here(monkeypatch):
    monkeypatch.setattr(P, "tensorrt_version", lambda: "100300")
    monkeypatch.setattr(P, "no_gpu_here", lambda: False)


def test_doctor_opens_tensorrt_with_the_options_and_cache_folders_a_run_uses(gpu_here, monkeypatch, tmp_path):
    root = tmp_path / "fresh" / "cache"  # no parent yet: TensorRT alone would refuse it
    monkeypatch.setenv("EDGEVISION_CACHE", str(root))
    fake = GpuOrt()
    checks = doctor.check_providers(fake)
    assert [(c.status, c.text) for c in checks] == [("ok", "TensorRT loads"), ("ok", "CUDA loads"), ("ok", "CPU loads")]
    trt = fake.InferenceSession.options_for(P.TRT)[0]
    assert trt["trt_fp16_enable"] == "True" and Path(trt["trt_engine_cache_path"]).is_relative_to(root / "trt")
    assert Path(trt["trt_engine_cache_path"]).is_dir()
    assert fake.InferenceSession.options_for(P.CUDA)[0]["cudnn_conv_algo_search"] == "HEURISTIC"
    assert doctor.verdict(checks) == "ready for CUDA and TensorRT (and the CPU)"


def test_doctor_warns_when_the_engine_cache_folder_cannot_be_made(gpu_here, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EDGEVISION_CACHE", str(blocker))
    checks = doctor.check_providers(GpuOrt())
    cache = [c for c in checks if c.status == "warn"]
    assert len(cache) == 1 and cache[0].text.startswith(f"TensorRT engine not cached: cannot create {blocker}")
    assert "EDGEVISION_CACHE" in cache[0].fix


def test_a_tensorrt_that_does_not_load_gets_the_pip_fixes(gpu_here, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path))

    def no_nvinfer(model, so=None, providers=None, provider_options=None, **kwargs):
        if providers[0] == P.TRT:
            os.write(2, b"Failed to load library libonnxruntime_providers_tensorrt.so with error: libnvinfer.so.10: "
                        b"cannot open shared object file: No such file or directory\n")
            return FakeGpu()(model, so, providers[1:], provider_options[1:])
        return FakeGpu()(model, so, providers, provider_options)

    checks = doctor.check_providers(GpuOrt(no_nvinfer))
    trt = checks[0]
    assert (trt.status, trt.text) == ("warn", "TensorRT does not load: libnvinfer.so.10 not found")
    assert "pip install 'onnxruntime-gpu[cuda,cudnn]'" in trt.fix and "export LD_LIBRARY_PATH=" in trt.fix
    assert "LD_LIBRARY_PATH" not in checks[1].fix and checks[1].text == "CUDA loads"

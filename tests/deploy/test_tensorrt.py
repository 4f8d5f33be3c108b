"""TensorRT and the fallbacks around it (issue 27), on a fake GPU session that behaves like onnxruntime-gpu
1.31.1's (tests/faketrt.py says how); no GPU is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import solid_frame
from edgevision.deploy import providers as P
from edgevision.deploy import sessions
from edgevision.deploy.chain import ChainRunner
from edgevision.deploy.errors import UserError
from edgevision.deploy.runner import Runner, RunnerOptions, model_info
from faketrt import FakeGpu, parse_shapes

BACKBONE = Path(__file__).resolve().parents[2] / "models" / "backbone.onnx"


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """A machine with a GPU whose TensorRT library loads; the cache root is a folder not made yet."""
    fake = FakeGpu()
    monkeypatch.setattr(ort, "InferenceSession", fake)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [P.TRT, P.CUDA, P.CPU])
    monkeypatch.setattr(P, "tensorrt_version", lambda: "100300")
    monkeypatch.setattr(P, "no_gpu_here", lambda: False)
    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "fresh" / "home" / ".cache" / "edgevision"))
    return fake


@pytest.fixture
def made_cache(monkeypatch, tmp_path):
    """A cache root whose trt folder exists (a machine where TensorRT ran before): item 1 out of the way."""
    (tmp_path / "made" / "trt").mkdir(parents=True)
    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "made"))


def _options(**fields) -> RunnerOptions:
    notice = fields.pop("notice", None)
    providers = fields.pop("providers", "trt,cuda,cpu")
    return RunnerOptions(providers=providers, config=P.ProviderConfig(**fields), notice=notice)


# 1. The engine cache folder and its parents are made; when they cannot be, TensorRT runs uncached and says so.

def test_tensorrt_runs_on_a_fresh_machine_whose_cache_folder_does_not_exist_yet(gpu, tiny_model, capfd):
    told = []
    runner = Runner(tiny_model("classify"), _options(notice=told.append))
    assert runner.report.running == P.TRT and runner.provider_line == "running on TensorRT"
    trt = gpu.options_for(P.TRT)[-1]
    assert Path(trt["trt_engine_cache_path"]).is_dir() and Path(trt["trt_timing_cache_path"]).is_dir()
    assert len(told) == 1 and f"it is cached in {trt['trt_engine_cache_path']}" in told[0]
    assert capfd.readouterr().out == ""


def test_a_cache_folder_that_cannot_be_made_means_an_uncached_engine_said_so(gpu, tiny_model, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache root should be")
    told = []
    runner = Runner(tiny_model("classify"), _options(cache_root=blocker, notice=told.append))
    assert runner.report.running == P.TRT
    trt = gpu.options_for(P.TRT)[-1]
    assert trt["trt_engine_cache_enable"] == "False" and trt["trt_timing_cache_enable"] == "False"
    assert "trt_engine_cache_path" not in trt
    assert runner.provider_line.startswith(f"running on TensorRT (TensorRT engine not cached: cannot create {blocker}")
    assert len(told) == 1 and "so it is built on every start" in told[0]


# 2. Shape profiles: batch 1 to max_batch at the model's size; larger batches are split; nothing rebuilds.

def test_every_batch_the_runner_sends_is_inside_one_tensorrt_profile(gpu, made_cache, tiny_model):
    runner = Runner(tiny_model("classify", input_hw=(32, 48)), _options())
    trt = gpu.options_for(P.TRT)[-1]
    assert trt["trt_profile_min_shapes"] == trt["trt_profile_opt_shapes"] == "image:1x32x48x3"
    assert trt["trt_profile_max_shapes"] == "image:16x32x48x3"
    for n in (1, 8, 16, 3, 40, 1):  # a predict batch, a remainder, more than the profile holds (split)
        results, _ = runner.infer([solid_frame(20, 30)] * n)
        assert len(results) == n
    assert gpu.builds == 1 and max(gpu.trt_batches) == 16 and runner.report.running == P.TRT
    assert sorted(set(gpu.trt_batches)) == [1, 3, 8, 16]  # 40 went as 16 + 16 + 8


def test_the_profile_covers_a_larger_predict_batch_and_its_engine_is_cached_apart(gpu, made_cache, tiny_model):
    from edgevision.camera.api import load

    model = tiny_model("classify")
    load(model, providers="trt", batch=8)
    load(model, providers="trt", batch=32).predict([solid_frame(10, 10)] * 32)
    default, larger = gpu.options_for(P.TRT)
    assert parse_shapes(default["trt_profile_max_shapes"])["image"][0] == 16
    assert parse_shapes(larger["trt_profile_max_shapes"])["image"][0] == 32
    assert default["trt_engine_cache_path"] != larger["trt_engine_cache_path"]  # another profile, another engine
    assert gpu.builds == 2 and 32 in gpu.trt_batches


def test_a_chain_sends_its_crops_in_batches_the_classifier_profile_covers(gpu, made_cache, tiny_model):
    options = _options()
    chain = ChainRunner(Runner(tiny_model("detect"), options), Runner(tiny_model("classify"), options))
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:] = (0, 0, 255)
    for n in (1, 9, 2):  # 2 boxes a frame: 2, 18 (split 16 + 2) and 4 crops
        results, _ = chain.infer([frame] * n)
        assert [len(r.then) for r in results] == [2] * n
    assert max(gpu.trt_batches) == 16 and gpu.builds == 2  # one engine each, never rebuilt


def test_the_backbone_runs_at_one_size_with_batches_up_to_its_profile(gpu, made_cache):
    from edgevision.deploy.embed import Backbone

    backbone = Backbone(BACKBONE, 64, _options(providers="trt"))
    trt = gpu.options_for(P.TRT)[-1]
    assert trt["trt_profile_min_shapes"] == "image:1x64x64x3" and trt["trt_profile_max_shapes"] == "image:16x64x64x3"
    features = backbone([solid_frame(50, 70)] * 19, batch_size=32)  # split into 16 + 3
    assert features.shape == (19, backbone.spec.dim) and backbone([solid_frame(9, 9)]).shape[0] == 1
    assert gpu.builds == 1 and sorted(set(gpu.trt_batches)) == [1, 3, 16]


def test_a_graph_with_every_dim_fixed_gets_no_profile_and_a_free_size_needs_one_given(tiny_model):
    assert P.shape_profile(tiny_model("classify", batch=1), None, 16) is None  # export --batch 1: nothing free
    assert P.shape_profile(BACKBONE, None, 16) is None  # free height and width, and no size to fix them at
    profile = P.shape_profile(BACKBONE, (96, 128), 4)
    assert profile.options()["trt_profile_max_shapes"] == "image:4x96x128x3"


# 3. onnxruntime's own fallback is off; ours keeps the options and the report says what ran.

def test_when_tensorrt_throws_cuda_runs_with_our_device_and_cudnn_settings(gpu, tiny_model, capfd):
    gpu.trt_throws = "[ONNXRuntimeError] : 1 : FAIL : TensorRT EP could not create builder: out of memory"
    runner = Runner(tiny_model("classify"), _options(device_id=1, cudnn_conv_algo_search="DEFAULT"))
    assert runner.report.running == P.CUDA
    assert gpu.options_for(P.CUDA)[-1] == {"device_id": "1", "cudnn_conv_algo_search": "DEFAULT"}
    assert runner.provider_line == "running on CUDA: TensorRT could not be used (out of memory)"
    assert capfd.readouterr().out == ""  # no "EP Error" banner on the user's stdout


def test_an_older_wrapper_that_ignores_enable_fallback_is_caught_and_redone_with_our_options(gpu, tiny_model):
    gpu.old_wrapper = True
    gpu.trt_throws = "TensorRT EP failed to create engine"
    runner = Runner(tiny_model("classify"), _options(device_id=1))
    assert runner.report.running == P.CUDA and runner.report.reason == "TensorRT EP failed to create engine"
    assert [names for names, _ in gpu.made][-1] == [P.CUDA, P.CPU]
    assert gpu.made[-1][1][0]["device_id"] == "1"  # the wrapper's own retry had no options; ours has them


def test_tensorrt_failing_at_run_time_is_replaced_by_cuda_and_the_report_says_so(gpu, made_cache, tiny_model, capfd):
    gpu.trt_fails_at_run = True
    told = []
    runner = Runner(tiny_model("classify"), _options(device_id=1, notice=told.append))  # fails in the dry run
    assert runner.report.running == P.CUDA and runner.provider_name == "CUDA"
    assert runner.provider_line.startswith("running on CUDA: TensorRT could not be used (failed at run time: ")
    assert gpu.options_for(P.CUDA)[-1]["device_id"] == "1"
    assert any("running on CUDA from now on" in t for t in told)
    assert capfd.readouterr().out == ""


def test_the_cpu_is_the_last_resort_when_only_tensorrt_was_asked_for(gpu, tiny_model):
    gpu.trt_throws = "TensorRT EP failed to create engine"
    runner = Runner(tiny_model("classify"), _options(providers="trt"))
    assert runner.report.running == P.CPU and not runner.report.on_gpu
    assert runner.provider_line == "running on CPU: TensorRT could not be used (TensorRT EP failed to create engine)"


def test_the_reason_is_the_cause_after_the_banner_not_the_banner():
    log = ["*************** EP Error ***************",
           "EP Error [ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/x/tensorrt_execution_provider.cc:1795 "
           "onnxruntime::TensorrtExecutionProvider::TensorrtExecutionProvider(const Info&) Failed to create "
           "directory /home/u/.cache/edgevision/trt/m-1 when using ['TensorrtExecutionProvider']",
           "Falling back to ['CPUExecutionProvider'] and retrying.", "****************************************"]
    assert P.load_failure_reason(log) == "Failed to create directory /home/u/.cache/edgevision/trt/m-1"
    assert sessions.wrapper_fell_back(log)


# 4. CUDA and cuDNN from pip are preloaded where onnxruntime can.

def test_cuda_libraries_from_pip_are_preloaded_once_before_a_gpu_session(gpu, tiny_model, monkeypatch):
    calls = []
    monkeypatch.setattr(ort, "preload_dlls", lambda: calls.append(1) or print("Failed to load libcublasLt.so.13"),
                        raising=False)
    monkeypatch.setattr(sessions, "_preloaded", False)
    Runner(tiny_model("classify"), _options(providers="cpu"))
    assert calls == []
    Runner(tiny_model("classify"), _options(providers="cuda"))
    Runner(tiny_model("classify", name="b.onnx"), _options(providers="cuda"))
    assert calls == [1]
    monkeypatch.delattr(ort, "preload_dlls")  # older onnxruntime: nothing to call
    monkeypatch.setattr(sessions, "_preloaded", False)
    assert Runner(tiny_model("classify", name="c.onnx"), _options(providers="cuda")).report.running == P.CUDA


# 5. One timing cache; bench and info announce builds; the chain's overlay names both providers.

def test_every_model_shares_one_timing_cache(gpu, made_cache, tiny_model):
    Runner(tiny_model("classify"), _options())
    Runner(tiny_model("detect"), _options())
    first, second = gpu.options_for(P.TRT)
    assert first["trt_timing_cache_path"] == second["trt_timing_cache_path"]
    assert first["trt_engine_cache_path"] != second["trt_engine_cache_path"]


def test_bench_and_info_announce_a_tensorrt_engine_build(gpu, tiny_model, capfd):
    from edgevision.camera.bench import bench

    model = tiny_model("classify")
    told = []
    info = model_info(model, notice=told.append)
    assert info["providers_that_load"][P.TRT] is True
    assert len(told) == 1 and "building a TensorRT engine for classify.onnx" in told[0]
    capfd.readouterr()
    rows = bench(tiny_model("detect"), "trt", None, 2, 0)
    assert [r.provider for r in rows] == ["TensorRT"]
    assert "building a TensorRT engine for detect.onnx" in capfd.readouterr().err


def test_bench_labels_a_row_with_what_ran_not_what_was_asked(gpu, made_cache, tiny_model):
    from edgevision.camera.bench import bench

    gpu.trt_fails_at_run = True  # the session is made; TensorRT fails on its first run
    rows = bench(tiny_model("classify"), "trt", None, 2, 0)
    assert [(r.requested, r.provider, r.fell_back) for r in rows] == [("TensorRT", "CPU", True)]


def test_the_chain_overlay_names_the_provider_of_each_model(gpu, made_cache, tiny_model):
    chain = ChainRunner(Runner(tiny_model("detect"), _options(providers="trt")),
                        Runner(tiny_model("classify"), _options(providers="cpu")))
    assert chain.provider_name == "TensorRT+CPU"
    assert chain.provider_line == "running on TensorRT; then classify.onnx running on CPU"
    same = ChainRunner(chain.first, Runner(tiny_model("classify", name="c2.onnx"), _options(providers="trt")))
    assert same.provider_name == "TensorRT" and same.provider_line == "running on TensorRT"


# Issue 22, item 20: without an NVIDIA GPU, TensorRT is named only when it was asked for.

def test_without_a_gpu_the_default_order_does_not_talk_about_tensorrt(tiny_model, monkeypatch):
    def no_provider_library(model, so=None, providers=None, provider_options=None, **kwargs):
        import os

        if providers[0] != P.CPU:
            os.write(2, b"Failed to load library libonnxruntime_providers_cuda.so with error: libcublas.so.13: "
                        b"cannot open shared object file\n")
        return FakeGpu()(model, so, [P.CPU], None)

    monkeypatch.setattr(ort, "InferenceSession", no_provider_library)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [P.TRT, P.CUDA, P.CPU])
    monkeypatch.setattr(P, "no_gpu_here", lambda: True)
    model = tiny_model("classify")
    assert Runner(model).provider_line == "running on CPU"
    assert Runner(model, RunnerOptions(providers="trt")).provider_line == (
        "running on CPU: TensorRT could not be used (no NVIDIA GPU on this machine; libcublas.so.13 not found)")
    with pytest.raises(UserError, match=r"--require-gpu: .*TensorRT could not be used \(no NVIDIA GPU"):
        Runner(model, RunnerOptions(require_gpu=True))  # asking for a GPU is asking: the reason is given

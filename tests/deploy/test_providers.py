import os
import sys
from pathlib import Path

import pytest
from edgevision.deploy import providers as P
from edgevision.deploy.errors import UserError

ALL = [P.TRT, P.CUDA, P.CPU]


def test_default_order_is_tensorrt_then_cuda_then_cpu_limited_to_the_build():
    assert P.parse_providers(None, ALL) == ALL
    assert P.parse_providers(None, [P.CPU]) == [P.CPU]
    assert P.parse_providers(None, [P.CUDA, P.CPU]) == [P.CUDA, P.CPU]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("trt", [P.TRT]),
        ("TensorRT,cuda", [P.TRT, P.CUDA]),
        ("cuda, cpu", [P.CUDA, P.CPU]),
        ("CPUExecutionProvider", [P.CPU]),
        ("cpu,cpu", [P.CPU]),
        ("gpu", [P.CUDA]),
    ],
)
def test_provider_aliases_and_full_names_parse_in_order(text, expected):
    assert P.parse_providers(text, ALL) == expected


def test_unknown_provider_name_is_a_clear_error():
    with pytest.raises(UserError, match="unknown provider 'tpu'"):
        P.parse_providers("tpu", ALL)


def test_a_provider_missing_from_the_build_is_refused_not_skipped():
    with pytest.raises(UserError, match="CUDA is not in this onnxruntime build.*install onnxruntime-gpu"):
        P.parse_providers("cuda", [P.CPU])


def test_empty_providers_text_is_refused():
    with pytest.raises(UserError, match="--providers is empty"):
        P.parse_providers(" , ", ALL)


def test_tensorrt_options_turn_on_fp16_and_a_per_model_engine_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"one")
    trt, cuda, cpu = P.provider_options(ALL, model)
    assert trt["trt_fp16_enable"] == "True" and trt["trt_engine_cache_enable"] == "True"
    assert Path(trt["trt_engine_cache_path"]).is_relative_to(tmp_path / "cache")
    assert cuda == {"device_id": "0"} and cpu == {}
    model.write_bytes(b"two")  # different bytes, different engine folder: a stale engine is never used
    assert P.provider_options([P.TRT], model)[0]["trt_engine_cache_path"] != trt["trt_engine_cache_path"]
    assert P.provider_options([P.TRT], model, fp16=False)[0]["trt_fp16_enable"] == "False"


def test_load_failure_reason_distils_onnxruntime_noise_to_one_phrase():
    noise = [
        "\x1b[1;31m2026-01-01 [E:onnxruntime:Default, provider_bridge_ort.cc:2430] Failed to load library "
        "libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file: "
        "No such file or directory\x1b[m",
    ]
    assert P.load_failure_reason(noise) == "libcublasLt.so.13 not found"
    assert P.load_failure_reason(["*** EP Error ***", "Please install TensorRT libraries as mentioned"]) == (
        "TensorRT libraries not found"
    )
    assert P.load_failure_reason([]) == "no reason given by onnxruntime"


def test_report_line_says_which_provider_runs_and_why_the_first_choice_did_not():
    ok = P.ProviderReport((P.CUDA, P.CPU), (P.CUDA, P.CPU), "")
    assert ok.line() == "running on CUDA" and ok.on_gpu and not ok.fell_back
    fallback = P.ProviderReport((P.CUDA, P.CPU), (P.CPU,), "libcudart.so.13 not found")
    assert fallback.fell_back and not fallback.on_gpu
    assert fallback.line() == "running on CPU: CUDA could not be used (libcudart.so.13 not found)"


def test_captured_fds_catches_c_level_and_python_output(capfd):
    with P.captured_fds() as lines:
        print("from python")
        os.write(2, b"from c stderr\n")
        sys.stdout.flush()
    assert lines == ["from python", "from c stderr"]
    out, err = capfd.readouterr()
    assert "from" not in out + err

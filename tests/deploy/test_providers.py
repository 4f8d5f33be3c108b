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


def test_options_per_provider_come_from_one_config(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"one")
    config = P.ProviderConfig(trt_workspace_gb=0.5, device_id=1, cudnn_conv_algo_search="DEFAULT",
                              cache_root=tmp_path / "cache")
    trt, cuda, cpu = P.provider_options(ALL, model, config)
    assert trt["trt_fp16_enable"] == "True" and trt["trt_engine_cache_enable"] == "True"
    assert trt["trt_max_workspace_size"] == str(1 << 29) and trt["device_id"] == "1"
    assert trt["trt_timing_cache_enable"] == "True"  # one timing cache for every model (test_tensorrt.py)
    assert Path(trt["trt_engine_cache_path"]).is_relative_to(tmp_path / "cache" / "trt")
    assert cuda == {"device_id": "1", "cudnn_conv_algo_search": "DEFAULT"} and cpu == {}
    fp32 = P.provider_options([P.TRT], model, P.ProviderConfig(fp16=False, cache_root=tmp_path))[0]
    assert fp32["trt_fp16_enable"] == "False" and fp32["trt_int8_enable"] == "False"
    assert fp32["trt_engine_cache_path"] != P.provider_options([P.TRT], model, P.ProviderConfig(
        cache_root=tmp_path))[0]["trt_engine_cache_path"]  # FP32 and FP16 engines are cached apart
    qdq = tmp_path / "m.int8.onnx"
    qdq.write_bytes(b"...QuantizeLinear...DequantizeLinear...")  # op names are plain strings in the file
    int8 = P.provider_options([P.TRT], qdq, config)[0]
    assert int8["trt_int8_enable"] == "True" and int8["trt_int8_use_native_calibration_table"] == "False"
    model.write_bytes(b"two")  # other bytes, another engine folder: a stale engine is never used
    assert P.provider_options([P.TRT], model, config)[0]["trt_engine_cache_path"] != trt["trt_engine_cache_path"]


def test_the_engine_cache_key_changes_when_any_of_its_inputs_changes():
    base = ("sha-of-model", "1.22.0", "100300", "NVIDIA Jetson Orin Nano")
    keys = {P.cache_key(*base)}
    for i, changed in enumerate(["other-model", "1.23.0", "100301", "NVIDIA Jetson AGX Orin"]):
        args = list(base)
        args[i] = changed
        keys.add(P.cache_key(*args))
    assert len(keys) == 5 and P.cache_key(*base) == P.cache_key(*base)


def test_engine_build_is_needed_until_an_engine_file_is_cached(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"bytes")
    folder = P.engine_cache_dir(model, tmp_path / "cache")
    assert P.needs_engine_build(folder)
    folder.mkdir(parents=True)
    (folder / "TensorrtExecutionProvider_m_123.engine").write_bytes(b"x")
    assert not P.needs_engine_build(folder)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trt_workspace_gb": 0}, "--trt-workspace-gb"),
        ({"device_id": -1}, "--device must be 0 or more"),
        ({"cudnn_conv_algo_search": "FAST"}, "--cudnn-algo must be one of"),
        ({"threads": -2}, "--threads must be 0"),
    ],
)
def test_bad_provider_settings_fail_when_the_config_is_built(fields, message):
    with pytest.raises(UserError, match=message):
        P.ProviderConfig(**fields)


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

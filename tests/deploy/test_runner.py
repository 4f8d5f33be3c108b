from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import TASK_KINDS, solid_frame
from edgevision.deploy import providers as P
from edgevision.deploy.errors import UserError
from edgevision.deploy.results import Classification, Detections, Keypoints, Segmentation
from edgevision.deploy.runner import Runner, RunnerOptions
from tinymodels import KEYPOINTS

RESULT_TYPES = {"classify": Classification, "keypoints": Keypoints, "segment": Segmentation, "detect": Detections}


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_runner_returns_the_typed_result_for_each_task_kind(tiny_model, kind):
    runner = Runner(tiny_model(kind), RunnerOptions(providers="cpu"))
    results, timings = runner.infer([solid_frame(60, 80), solid_frame(30, 30)])
    assert [type(r) for r in results] == [RESULT_TYPES[kind]] * 2
    assert set(timings) == {"preprocess_ms", "infer_ms", "decode_ms"}
    assert isinstance(results[0].to_dict(), dict) and results[0].to_dict()["task"] == kind


def test_classifier_sees_rgb_so_a_red_bgr_frame_is_red(tiny_model):
    runner = Runner(tiny_model("classify"), RunnerOptions(providers="cpu"))
    assert runner(solid_frame(40, 40, (0, 0, 255))).label == "red"
    assert runner(solid_frame(40, 40, (255, 0, 0))).label == "blue"


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_keypoints_come_back_in_source_pixels_for_non_square_frames(tiny_model, resize):
    runner = Runner(tiny_model("keypoints", input_hw=(64, 64), spec={"resize": resize}), RunnerOptions(providers="cpu"))
    h, w = 120, 360
    points = runner(solid_frame(h, w)).xy
    if resize == "stretch":
        expected = KEYPOINTS * np.float32((w, h))
    else:  # 360x120 letterboxed into 64x64: scale 64/360, 21 rows of padding on top
        scale = 64 / 360
        top = (64 - round(h * scale)) // 2
        expected = (KEYPOINTS * 64 - np.float32((0, top))) / np.float32((scale * 1.0, round(h * scale) / h))
    np.testing.assert_allclose(points, expected, atol=0.6)


def test_segmentation_mask_is_at_source_size_and_follows_the_object(tiny_model):
    runner = Runner(tiny_model("segment", input_hw=(32, 32)), RunnerOptions(providers="cpu"))
    frame = solid_frame(90, 160, (0, 0, 0))
    frame[30:60, 40:120] = (0, 0, 255)  # a red rectangle
    seg = runner(frame)
    assert seg.class_map.shape == (90, 160)
    assert seg.class_map[40:50, 60:100].min() == 1 and seg.class_map[:20].max() == 0
    assert 0.1 < seg.fractions()["thing"] < 0.25  # 2400 / 14400 = 0.167


def test_detections_are_suppressed_and_scaled_to_source_pixels(tiny_model):
    runner = Runner(tiny_model("detect", input_hw=(32, 32)), RunnerOptions(providers="cpu"))
    det = runner(solid_frame(100, 200))
    assert det.label_id.tolist() == [0, 1]  # the overlapping cat box is suppressed
    np.testing.assert_allclose(det.xyxy[0], [20, 10, 100, 50], atol=1e-3)
    strict = Runner(runner.path, RunnerOptions(providers="cpu", score_threshold=0.75))
    assert strict(solid_frame(100, 200)).label_id.tolist() == [0]


def test_fixed_batch_models_run_a_batch_in_chunks(tiny_model):
    runner = Runner(tiny_model("classify", batch=1), RunnerOptions(providers="cpu"))
    assert runner.fixed_batch == 1
    results, _ = runner.infer([solid_frame(10, 10, c) for c in [(0, 0, 255), (0, 255, 0), (255, 0, 0)]])
    assert [r.label for r in results] == ["red", "green", "blue"]


def test_run_fails_clearly_when_model_has_no_spec(tiny_model):
    with pytest.raises(UserError, match="has no edgevision spec.*edgevision export"):
        Runner(tiny_model("classify", with_spec=False))


def test_run_fails_clearly_when_the_spec_is_malformed(tiny_model):
    with pytest.raises(UserError, match="bad edgevision spec: unknown spec keys: size"):
        Runner(tiny_model("classify", spec={"size": 3}))


def test_run_fails_when_spec_and_graph_disagree_on_input_size(tiny_model):
    with pytest.raises(UserError, match=r"input is 32x48 but its spec says \(64, 64\)"):
        Runner(tiny_model("classify", spec={"input_hw": [64, 64]}))


def test_require_gpu_with_cpu_only_is_refused_when_options_are_built():
    with pytest.raises(UserError, match="--require-gpu cannot be met with --providers cpu"):
        RunnerOptions(providers="cpu", require_gpu=True)


class FallbackSession:
    """Stands in for onnxruntime's session on a machine whose CUDA libraries are missing."""

    def __init__(self, real):
        self._real = real

    def __call__(self, path, so, providers, provider_options, **kwargs):
        import os

        os.write(2, b"\x1b[1;31m[E:onnxruntime] libcudnn.so.9: cannot open shared object file\x1b[m\n")
        print("*** EP Error *** falling back")  # onnxruntime really prints this to stdout
        return self._real(path, so, providers=["CPUExecutionProvider"])


def test_asked_for_cuda_got_cpu_is_reported_in_one_line_without_the_noise(tiny_model, monkeypatch, capfd):
    monkeypatch.setattr(P, "no_gpu_here", lambda: False)  # a machine with a GPU but no cuDNN
    monkeypatch.setattr(ort, "get_available_providers", lambda: [P.CUDA, P.CPU])
    monkeypatch.setattr(ort, "InferenceSession", FallbackSession(ort.InferenceSession))
    runner = Runner(tiny_model("classify"), RunnerOptions(providers="cuda"))
    assert runner.report.fell_back
    assert runner.provider_line == "running on CPU: CUDA could not be used (libcudnn.so.9 not found)"
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # the noise stays out of the user's terminal
    with pytest.raises(UserError, match="--require-gpu: no GPU provider could be used"):
        Runner(tiny_model("classify", name="again.onnx"), RunnerOptions(providers="cuda", require_gpu=True))


def test_on_a_machine_without_an_nvidia_gpu_the_fallback_says_so_first(tiny_model, monkeypatch, tmp_path):
    from edgevision.deploy import providers

    monkeypatch.setattr(providers, "gpu_name", lambda: "none")
    monkeypatch.setattr(providers, "WSL_GPU_DEVICE", tmp_path / "no-dxg")
    monkeypatch.setattr(ort, "get_available_providers", lambda: [P.CUDA, P.CPU])
    monkeypatch.setattr(ort, "InferenceSession", FallbackSession(ort.InferenceSession))
    runner = Runner(tiny_model("classify"), RunnerOptions(providers="cuda"))
    assert runner.provider_line == ("running on CPU: CUDA could not be used (no NVIDIA GPU on this machine; "
                                    "libcudnn.so.9 not found)")
    monkeypatch.setattr(providers, "gpu_name", lambda: "NVIDIA Jetson Orin Nano Developer Kit")
    assert not providers.no_gpu_here()
    monkeypatch.setattr(providers, "gpu_name", lambda: "none")
    (tmp_path / "no-dxg").touch()  # WSL2: a GPU without /proc/driver/nvidia
    assert not providers.no_gpu_here()


@pytest.mark.skipif(
    P.CUDA not in ort.get_available_providers() or Path("/dev/nvidiactl").exists(),
    reason="needs an onnxruntime-gpu build on a machine without an NVIDIA GPU",
)
def test_real_onnxruntime_gpu_build_falls_back_to_cpu_here_and_says_so(tiny_model, capfd):
    """The default order is not a request for TensorRT: without a GPU it only says where the model runs;
    naming TensorRT gets the reason (issue 22, item 20)."""
    runner = Runner(tiny_model("classify"))
    assert runner.report.requested[0] in (P.TRT, P.CUDA)
    assert runner.report.running == P.CPU
    assert runner.provider_line == "running on CPU"
    asked = Runner(tiny_model("classify"), RunnerOptions(providers="trt"))
    assert asked.provider_line.startswith("running on CPU: TensorRT could not be used (no NVIDIA GPU on this machine; ")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_a_first_tensorrt_engine_build_is_announced_before_it_starts(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setattr(P, "tensorrt_version", lambda: "100300")  # TensorRT's library loads
    monkeypatch.setattr(ort, "get_available_providers", lambda: [P.TRT, P.CPU])
    monkeypatch.setattr(ort, "InferenceSession", FallbackSession(ort.InferenceSession))
    told = []
    options = RunnerOptions(providers="trt", config=P.ProviderConfig(cache_root=tmp_path), notice=told.append)
    Runner(tiny_model("classify"), options)
    assert len(told) == 1 and "building a TensorRT engine for classify.onnx" in told[0]
    assert str(tmp_path / "trt") in told[0]


def test_no_engine_build_is_announced_where_tensorrt_cannot_load(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setattr(P, "tensorrt_version", lambda: "none")
    monkeypatch.setattr(ort, "get_available_providers", lambda: [P.TRT, P.CPU])
    monkeypatch.setattr(ort, "InferenceSession", FallbackSession(ort.InferenceSession))
    told = []
    options = RunnerOptions(providers="trt,cpu", config=P.ProviderConfig(cache_root=tmp_path), notice=told.append)
    runner = Runner(tiny_model("classify"), options)
    assert told == [] and runner.report.running == P.CPU


def test_cpu_threads_spin_for_back_to_back_runs_and_sleep_when_paced(tiny_model):
    """A camera-paced loop would otherwise burn a core waiting (see session_plan)."""
    from edgevision.deploy.providers import ProviderConfig

    key = "session.intra_op.allow_spinning"
    runner = Runner(tiny_model("classify"), RunnerOptions(providers="cpu"))
    assert runner.session.get_session_options().get_session_config_entry(key) == "1"
    paced = Runner(tiny_model("classify"), RunnerOptions(providers="cpu", config=ProviderConfig(spin=False)))
    assert paced.session.get_session_options().get_session_config_entry(key) == "0"


def test_a_chain_never_spins_its_two_sessions(tiny_model):
    """Two sessions taking turns on the same cores: one spinning after its run slows the other (see camera/api.load)."""
    import edgevision

    key = "session.intra_op.allow_spinning"
    chain = edgevision.load(tiny_model("detect"), then=tiny_model("classify"), providers="cpu").runner
    spins = [r.session.get_session_options().get_session_config_entry(key) for r in (chain.first, chain.then)]
    assert spins == ["0", "0"]
    alone = edgevision.load(tiny_model("classify"), providers="cpu").runner
    assert alone.session.get_session_options().get_session_config_entry(key) == "1"

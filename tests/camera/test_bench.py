import json
import re
import shutil

import pytest
from edgevision.camera.bench import STAGES, bench, precision_files
from edgevision.deploy.errors import UserError
from test_cli import assert_one_line_error, edgevision


def _variant_of(model, path, made_from=None):
    import onnx
    from edgevision.deploy.onnxmeta import SOURCE_KEY, file_sha256

    proto = onnx.load(model)
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props},
                                        SOURCE_KEY: file_sha256(made_from or model)})
    onnx.save(proto, path)


def test_a_variant_made_from_another_model_is_not_measured(tiny_model, capfd):
    model = tiny_model("classify", name="m.onnx")
    _variant_of(model, model.with_name("m.int8.onnx"), made_from=tiny_model("detect"))
    shutil.copy(model, model.with_name("m.fp16.onnx"))  # no record of where it came from
    assert precision_files(model) == [("fp32", model)]
    err = capfd.readouterr().err
    assert "m.int8.onnx was not made from this m.onnx (another model)" in err and "no record" in err


def test_bench_json_has_every_stage_for_each_precision_and_provider(tiny_model, synthetic_video):
    model = tiny_model("classify", name="m.onnx")
    _variant_of(model, model.with_name("m.int8.onnx"))  # stands in for a variant made from it
    proc = edgevision("bench", "--model", str(model), "--source", str(synthetic_video(20)), "--frames", "12",
                      "--warmup", "2", "--providers", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["precision"], r["provider"]) for r in rows] == [("fp32", "CPU"), ("int8", "CPU")]
    for row in rows:
        assert set(row["stages"]) == set(STAGES)
        assert all(row["stages"][s]["p95"] >= row["stages"][s]["median"] >= 0 for s in STAGES)
        assert row["frames"] == 12 and row["throughput_fps"] > 0 and row["rss_mb"] > 0 and not row["fell_back"]


def test_bench_times_a_pipeline_files_chain_as_one_row(tiny_model, tmp_path, synthetic_video):
    detector, classifier = tiny_model("detect", name="d.onnx"), tiny_model("classify", name="c.onnx")
    shutil.copy(classifier, classifier.with_name("c.int8.onnx"))  # a variant of the second model is not a chain's
    pipeline = tmp_path / "chain.json"
    pipeline.write_text(json.dumps({"model": str(detector), "then": str(classifier), "score_threshold": 0.01}))
    video = str(synthetic_video(10))
    (row,) = bench(pipeline, "cpu", video, 6, 1)
    assert row.precision == "fp32" and row.frames == 6 and row.stages["infer_ms"]["median"] > 0
    proc = edgevision("bench", "--model", str(pipeline), "--source", video, "--frames", "4", "--providers", "cpu")
    assert proc.returncode == 0 and "chain.json: 4 frames per run" in proc.stdout, proc.stderr
    # without frames that show something, only the detector would be timed: refused in one line
    assert_one_line_error(edgevision("bench", "--model", str(pipeline), "--providers", "cpu"),
                          "chain.json is a chain: give --source")


def test_bench_without_a_source_uses_a_synthetic_scene_and_prints_a_table(tiny_model):
    results = bench(tiny_model("detect"), "cpu", None, 5, 1)
    assert len(results) == 1 and "capture_ms" not in results[0].stages
    proc = edgevision("bench", "--model", str(tiny_model("segment")), "--frames", "5", "--providers", "cpu")
    assert proc.returncode == 0 and "median / p95 ms" in proc.stdout and "fp32" in proc.stdout


def test_bench_wants_the_float32_file_and_clear_options(tiny_model):
    model = tiny_model("classify", name="m.int8.onnx")
    with pytest.raises(UserError, match=r"give the float32 model \(m.onnx\)"):
        precision_files(model)
    proc = edgevision("bench", "--model", str(tiny_model("classify")), "--frames", "0")
    assert_one_line_error(proc, "--frames must be 1 or more")


@pytest.mark.skipif("CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers()
                    or __import__("pathlib").Path("/dev/nvidiactl").exists(),
                    reason="needs an onnxruntime-gpu build on a machine without a GPU (the GPU providers fall back)")
def test_bench_times_a_provider_that_really_runs_once(tiny_model):
    results = bench(tiny_model("classify"), "trt,cuda,cpu", None, 4, 0)
    rows = [(r.requested, r.provider, r.timed) for r in results]
    assert rows == [("TensorRT", "CPU", True), ("CUDA", "CPU", False), ("CPU", "CPU", False)], rows


FEEDS = [([], "in line, 2 frame(s) per inference, its own choice"),
         (["--feed", "threaded", "--batch", "2"], "by a second thread, 2 frame(s)")]


@pytest.mark.parametrize(("flags", "said"), FEEDS)
def test_the_loop_benchmark_pairs_run_with_a_bare_loop_and_says_how_run_was_fed(tiny_model, synthetic_video, capsys,
                                                                                flags, said):
    from edgevision.camera import bench_run

    video = synthetic_video(12)
    assert bench_run.main(["--model", str(tiny_model("classify")), "--video", str(video), "--repeats", "2",
                           "--max-frames", "12", *flags]) == 0
    out = capsys.readouterr().out
    ratio = r"\d\.\d{3}"
    assert said in out and re.search(rf"run / bare: {ratio} \(median of the paired runs; {ratio} to {ratio}\)", out)

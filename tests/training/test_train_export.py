"""Train, export, check parity and predict with a tiny model on synthetic data (needs the train extra)."""

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")
pytestmark = pytest.mark.train

import onnx
from edgevision.deploy.errors import UserError
from edgevision.deploy.runner import Runner, RunnerOptions
from edgevision.training.export import export, load_parity_images, load_run_model, parity_check, read_val_list
from edgevision.training.options import make_config
from edgevision.training.tasks.classify import train
from onnx import numpy_helper

COLOURS = {"reddish": (40, 40, 200), "bluish": (200, 60, 40)}  # BGR


def colour_dataset(root, per_class=14, seed=0):
    rng = np.random.default_rng(seed)
    for label, bgr in COLOURS.items():
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            image = np.clip(rng.normal(bgr, 30, size=(40, 56, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / label / f"{i}.png"), image)
    (root / "reddish" / "corrupt.png").write_bytes(b"\x89PNG broken")
    return root


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = colour_dataset(root / "data")
    config = make_config(dict(data=str(data), runs_dir=str(root / "runs"), mode="finetune", input_size=32,
                              backbone="tiny", weights="none", epochs=10, lr=3e-3, batch_size=8, seed=3, grayscale=0.0))
    lines = []
    run_dir = train(config, log=lines.append)
    return run_dir, lines, root


def test_training_writes_a_complete_run_folder(trained_run):
    run_dir, lines, _ = trained_run
    for name in ("model.keras", "metrics.json", "confusion.png", "curves.png", "config.toml", "spec.json", "val.tsv"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").rglob("events.out.tfevents.*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"bluish", "reddish"}
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["val_images"]
    assert metrics["accuracy"] >= 0.8  # colour is learnable from scratch in a few steps
    assert metrics["skipped_images"] and metrics["skipped_images"][0].endswith("corrupt.png")
    assert any("from scratch" in line for line in lines)
    assert any("finetune epoch  10/10" in line for line in lines)
    assert any("1 unreadable images skipped" in line for line in lines)


def test_export_checks_parity_and_the_runner_predicts_the_colours(trained_run):
    run_dir, lines, root = trained_run
    out = root / "models" / "colours.onnx"
    log = []
    report = export(run_dir, out, log=log.append)
    assert out.is_file() and report["parity"]["max_abs_diff"] <= 1e-3
    assert any("parity PASSED" in line for line in log)
    card = out.with_suffix(".md").read_text()
    assert "a seeded 20% stratified split (seed 3)" in card and "licence: not stated" in card
    assert "Validation accuracy (onnxruntime, val/): **" in card
    runner = Runner(out, RunnerOptions(providers="cpu"))
    assert runner.spec.kind == "classify" and runner.spec.labels == ("bluish", "reddish")
    assert runner.spec.input_hw == (32, 32)
    red = np.full((50, 80, 3), COLOURS["reddish"], np.uint8)
    blue = np.full((50, 80, 3), COLOURS["bluish"], np.uint8)
    assert [r.label for r in runner.infer([red, blue])[0]] == ["reddish", "bluish"]
    with pytest.raises(UserError, match="exists: choose another name or pass --overwrite"):
        export(run_dir, out, log=log.append)


def test_a_tampered_onnx_model_fails_the_parity_check(trained_run):
    run_dir, _, root = trained_run
    out = root / "models" / "tampered.onnx"
    export(run_dir, out, opset=15, batch=1, log=lambda _: None)
    proto = onnx.load(out)
    largest = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights = numpy_helper.to_array(largest)
    largest.CopyFrom(numpy_helper.from_array((weights * -1.5).astype(weights.dtype), largest.name))
    onnx.save(proto, out)
    model = load_run_model(run_dir)
    frames = load_parity_images(read_val_list(run_dir), 16)
    report = parity_check(model, out, frames, atol=1e-3, min_agreement=1.0)
    assert not report.passed and "parity FAILED" in report.text()


def test_export_refuses_and_writes_nothing_when_parity_fails(trained_run, monkeypatch):
    run_dir, _, root = trained_run
    import edgevision.training.export as export_module

    real_convert = export_module.convert

    def broken_convert(*args, **kwargs):
        proto = real_convert(*args, **kwargs)
        for t in proto.graph.initializer:
            if len(t.dims) == 1 and t.data_type == onnx.TensorProto.FLOAT:  # a bias: shift it
                arr = numpy_helper.to_array(t)
                t.CopyFrom(numpy_helper.from_array((arr + 5).astype(arr.dtype), t.name))
        return proto

    monkeypatch.setattr(export_module, "convert", broken_convert)
    out = root / "models" / "refused.onnx"
    with pytest.raises(UserError, match="export refused.*parity FAILED"):
        export(run_dir, out, log=lambda _: None)
    assert not out.exists() and not list(out.parent.glob(".export-*"))


def test_int8_and_fp16_variants_are_evaluated_against_float32_and_written(trained_run):
    run_dir, _, root = trained_run
    out = root / "variants" / "colours.onnx"
    log = []
    report = export(run_dir, out, log=log.append, variants=("int8", "fp16"), calib_images=10)
    for variant in ("int8", "fp16"):
        entry = report["variants"][variant]
        path = out.with_name(f"colours.{variant}.onnx")
        assert entry["written"] and path.is_file() and entry["file"] == str(path)
        assert entry["loss"] == pytest.approx(report["onnx_accuracy"] - entry["onnx_accuracy"])
        runner = Runner(path, RunnerOptions(providers="cpu"))  # runs on the CPU provider, spec carried over
        assert runner.spec.labels == ("bluish", "reddish")
        red = np.full((50, 80, 3), COLOURS["reddish"], np.uint8)
        assert runner(red).label == "reddish"
    assert report["variants"]["int8"]["calibration_images"] == 8  # 10 asked, used in chunks of 4
    card = out.with_suffix(".md").read_text()
    assert "## Precision variants" in card and "colours.int8.onnx" in card and "--int8 --fp16" in card
    int8_card = out.with_name("colours.int8.md").read_text()
    assert "INT8 variant of colours.onnx" in int8_card and "licence" in int8_card
    assert "Validation accuracy (onnxruntime, val/): **" in int8_card


def test_a_variant_that_loses_too_much_is_refused_and_not_written(trained_run, monkeypatch):
    run_dir, _, root = trained_run
    import edgevision.training.export as export_module

    monkeypatch.setattr(export_module, "metric_loss", lambda kind, fp32, variant: 0.5)
    out = root / "refusing" / "colours.onnx"
    log = []
    with pytest.raises(UserError, match="int8 variant lost more than --max-loss 0.01"):
        export(run_dir, out, log=log.append, variants=("int8",), calib_images=5)
    assert out.is_file() and not out.with_name("colours.int8.onnx").exists()
    assert any(line.startswith("REFUSED") for line in log)
    assert "(refused, not written)" in out.with_suffix(".md").read_text()
    assert not out.with_name("colours.int8.md").exists()


def test_ctrl_c_during_export_stops_cleanly_and_writes_nothing(trained_run, tmp_path):
    import signal
    import subprocess
    import sys

    run_dir, _, _ = trained_run
    out = tmp_path / "m.onnx"
    proc = subprocess.Popen([sys.executable, "-m", "edgevision.cli", "export", str(run_dir), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # Ctrl-C while tf2onnx traces the graph (inside TensorFlow's C++ code)
        seen.append(line)
        if line.startswith("converting"):
            proc.send_signal(signal.SIGINT)
            break
    err = "".join(seen) + proc.stderr.read()
    assert proc.wait(timeout=120) == 130, err
    assert "stopping when the conversion is done" in err and "stopped (Ctrl-C)" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".export-*")) and not out.with_suffix(".md").exists()

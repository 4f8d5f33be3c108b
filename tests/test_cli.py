"""The edgevision command as a user runs it: subprocesses, exit codes, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from conftest import REPO, solid_frame

EDGEVISION = [sys.executable, "-m", "edgevision.cli"]
HEADLESS = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}

NO_TF_CHECK = """
import sys
from edgevision.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'tf2onnx', 'tensorboard'})
print('HEAVY=' + ','.join(heavy), file=sys.stderr)
sys.exit(rc)
"""


def edgevision(*args, cwd=None, check_tf=False, timeout=120):
    cmd = [sys.executable, "-c", NO_TF_CHECK, *args] if check_tf else [*EDGEVISION, *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=HEADLESS, timeout=timeout)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("edgevision: error:")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("kind", ["classify", "keypoints", "segment", "detect"])
def test_run_on_a_video_writes_one_json_line_per_frame_without_tensorflow(tiny_model, synthetic_video, tmp_path, kind):
    out = tmp_path / "out.jsonl"
    proc = edgevision("run", "--model", str(tiny_model(kind)), "--source", str(synthetic_video(70)),
                      "--no-display", "--jsonl", str(out), "--max-frames", "60", check_tf=True)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr + "\n"  # no TensorFlow, Keras or tf2onnx was imported
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 60
    assert [r["frame"] for r in records] == list(range(60))
    assert records[0]["result"]["task"] == kind
    assert set(records[0]["timings_ms"]) >= {"capture_ms", "preprocess_ms", "infer_ms", "decode_ms", "draw_ms"}
    assert "running on" in proc.stderr and "60 frames" in proc.stderr


def test_run_records_the_overlay_to_a_video(tiny_model, synthetic_video, tmp_path):
    out = tmp_path / "overlay.mp4"
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(synthetic_video(20)),
                      "--no-display", "--record", str(out))
    assert proc.returncode == 0, proc.stderr
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    ok, frame = cap.read()
    assert ok and (frame[:60, :40] != solid_frame(96, 128)[:60, :40]).any()  # the label was drawn


def test_run_says_there_is_no_display_and_goes_on_headless(tiny_model, synthetic_video):
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(synthetic_video(5)))
    assert proc.returncode == 0, proc.stderr
    assert "no display found: running without a window" in proc.stderr
    assert "red" in proc.stderr  # the console sink's status line


def test_run_on_an_image_folder_and_a_single_image(tiny_model, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, colour in enumerate([(0, 0, 255), (0, 255, 0)]):
        cv2.imwrite(str(folder / f"{i}.png"), solid_frame(30, 50, colour))
    (folder / "broken.jpg").write_bytes(b"nope")
    out = tmp_path / "o.jsonl"
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(folder), "--jsonl", str(out))
    assert proc.returncode == 0, proc.stderr
    labels = [json.loads(line)["result"]["label"] for line in out.read_text().splitlines()]
    assert labels == ["red", "green"] and "1 unreadable images skipped" in proc.stderr
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(folder / "1.png"))
    assert proc.returncode == 0 and "1 frames" in proc.stderr


def test_predict_prints_one_json_line_per_image_and_counts_unreadable_ones(tiny_model, tmp_path):
    for label, colour in [("red", (0, 0, 255)), ("green", (0, 255, 0)), ("blue", (255, 0, 0))]:
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / "data" / label / f"{i}.jpg"), solid_frame(20 + i, 30, colour))
    (tmp_path / "data" / "red" / "corrupt.jpg").write_bytes(b"\xff\xd8 broken")
    proc = edgevision("predict", "--model", str(tiny_model("classify")), str(tmp_path / "data"), "--batch", "4",
                      check_tf=True)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 9
    assert set(rows[0]) == {"file", "task", "label", "score", "scores"}
    assert all(Path(r["file"]).parent.name == r["label"] for r in rows)
    assert "1 unreadable skipped" in proc.stderr and "accuracy 1.0000 on the 9" in proc.stderr
    assert "HEAVY=\n" in proc.stderr + "\n"


def test_predict_writes_masks_at_source_size(tiny_model, tmp_path):
    frame = solid_frame(50, 70, (0, 0, 0))
    frame[10:30, 20:50] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / "a.png"), frame)
    proc = edgevision("predict", "--model", str(tiny_model("segment")), str(tmp_path / "a.png"),
                      "--masks", str(tmp_path / "masks"))
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    mask = cv2.imread(row["mask"], cv2.IMREAD_UNCHANGED)
    assert mask.shape == (50, 70) and mask[20, 35] == 1 and mask[45, 5] == 0


@pytest.mark.parametrize("kind", ["classify", "detect"])
def test_info_shows_the_spec_io_opset_and_size(tiny_model, kind):
    proc = edgevision("info", str(tiny_model(kind)))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["spec"]["kind"] == kind and info["opsets"] == {"": 17}
    assert info["inputs"][0]["name"] == "image" and info["size_bytes"] > 0
    assert "CPUExecutionProvider" in info["providers_compiled_in"]
    assert info["providers_that_load"]["CPUExecutionProvider"] is True


def test_missing_model_file_is_one_line(tmp_path, synthetic_video):
    proc = edgevision("run", "--model", str(tmp_path / "nope.onnx"), "--source", str(synthetic_video(3)))
    assert_one_line_error(proc, "model file not found", "nope.onnx")


def test_a_file_that_is_not_onnx_is_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("this is not a model")
    proc = edgevision("predict", "--model", str(bad), str(tmp_path))
    assert_one_line_error(proc, "is not an ONNX model")


def test_a_model_without_our_spec_is_one_line(tiny_model, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), solid_frame(8, 8))
    proc = edgevision("predict", "--model", str(tiny_model("classify", with_spec=False)), str(tmp_path / "a.png"))
    assert_one_line_error(proc, "has no edgevision spec")


def test_a_camera_that_does_not_open_is_one_line(tiny_model):
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", "97", "--no-display")
    assert_one_line_error(proc, "camera 97 did not open")


def test_an_unknown_provider_is_one_line(tiny_model, synthetic_video):
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(synthetic_video(3)),
                      "--providers", "tpu")
    assert_one_line_error(proc, "unknown provider 'tpu'")


def test_an_existing_output_is_not_overwritten(tiny_model, synthetic_video, tmp_path):
    out = tmp_path / "keep.jsonl"
    out.write_text("keep me\n")
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(synthetic_video(3)),
                      "--jsonl", str(out))
    assert_one_line_error(proc, "keep.jsonl exists")
    assert out.read_text() == "keep me\n"


def test_predict_with_only_unreadable_images_exits_non_zero(tiny_model, tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"garbage")
    proc = edgevision("predict", "--model", str(tiny_model("classify")), str(tmp_path))
    assert proc.returncode == 1 and "0 images, 1 unreadable skipped" in proc.stderr


def test_train_without_a_data_folder_is_one_line(tmp_path):
    proc = edgevision("train", str(tmp_path / "nowhere"), "--weights", "none", "--mode", "finetune")
    if "needs the training extra" in proc.stderr:
        pytest.skip("the train extra is not installed")
    assert_one_line_error(proc, "data folder not found")


def test_module_entry_point_matches_the_console_script():
    proc = subprocess.run([*EDGEVISION, "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "run" in proc.stdout and "predict" in proc.stdout


def test_sigterm_stops_a_run_cleanly_and_finishes_the_recording(tiny_model, synthetic_video, tmp_path):
    import signal
    import time

    out = tmp_path / "rec.mp4"
    proc = subprocess.Popen(
        [*EDGEVISION, "run", "--model", str(tiny_model("classify")), "--source", str(synthetic_video(30)),
         "--loop", "--no-display", "--record", str(out)],
        stderr=subprocess.PIPE, text=True, env=HEADLESS,
    )
    deadline = time.time() + 60
    while not (out.exists() and out.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err  # SIGTERM's conventional code: a supervisor sees it was stopped
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) > 0 and cap.read()[0]


def test_display_asked_for_without_one_fails_before_any_output_file_exists(tiny_model, synthetic_video, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(synthetic_video(3)),
                      "--display", "--jsonl", str(out))
    assert_one_line_error(proc, "no display for a window")
    assert not out.exists()


def test_collect_errors_are_one_line(tmp_path, synthetic_video):
    proc = edgevision("collect", str(tmp_path / "d"), "--classes", "a,b", "--points", "nose")
    assert_one_line_error(proc, "give either --classes")
    (tmp_path / "file").write_text("x")
    proc = edgevision("collect", str(tmp_path / "file"), "--classes", "a,b")
    assert_one_line_error(proc, "is a file, not a folder")
    proc = edgevision("collect", str(tmp_path / "d"), "--classes", "a,b", "--source", "97")
    assert_one_line_error(proc, "camera 97 did not open")
    proc = edgevision("collect", str(tmp_path / "d"), "--classes", "a,b", "--source", str(synthetic_video(3)))
    assert_one_line_error(proc, "collect needs a window, and there is no display")
    proc = edgevision("collect", str(tmp_path / "d"), "--points", "nose", "--split", "0.2")
    assert_one_line_error(proc, "--split looks like val=0.2")
    assert not (tmp_path / "d").exists()  # nothing was written on the way to an error


def test_export_option_mistakes_are_one_line(tmp_path):
    proc = edgevision("export", str(tmp_path), "--out", str(tmp_path / "m.onnx"), "--calib", str(tmp_path))
    if "needs the training extra" in proc.stderr:
        pytest.skip("the train extra is not installed")
    assert_one_line_error(proc, "--calib is for --int8")
    proc = edgevision("export", str(tmp_path), "--out", str(tmp_path / "m.onnx"), "--int8", "--max-loss", "-1")
    assert_one_line_error(proc, "--max-loss must be 0 or more")


def test_run_replaces_the_background_for_segmentation_models_only(tiny_model, synthetic_video, tmp_path):
    out = tmp_path / "bg.mp4"
    proc = edgevision("run", "--model", str(tiny_model("segment")), "--source", str(synthetic_video(10)),
                      "--no-display", "--record", str(out), "--background", "0,0,255")
    assert proc.returncode == 0, proc.stderr
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    assert ok
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(synthetic_video(3)),
                      "--no-display", "--background", "blur")
    assert_one_line_error(proc, "--background needs a segmentation model")


def _voc(path: Path, name: str, box: tuple[int, int, int, int], hw=(96, 128)) -> None:
    h, w = hw
    x0, y0, x1, y1 = box
    path.write_text(f"<annotation><size><width>{w}</width><height>{h}</height></size><object><name>{name}</name>"
                    f"<bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>"
                    "</object></annotation>")


def test_run_and_predict_chain_a_detector_into_a_classifier_without_tensorflow(tiny_model, synthetic_video, tmp_path):
    det, cls = str(tiny_model("detect")), str(tiny_model("classify"))
    out = tmp_path / "chain.jsonl"
    proc = edgevision("run", "--model", det, "--then", cls, "--source", str(synthetic_video(12)), "--no-display",
                      "--jsonl", str(out), check_tf=True)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr + "\n"
    first = json.loads(out.read_text().splitlines()[0])["result"]
    assert first["task"] == "chain" and first["detections"][0]["then"]["label"] == "red"  # the clip starts red
    (tmp_path / "red").mkdir()
    cv2.imwrite(str(tmp_path / "red" / "a.png"), solid_frame(60, 90))
    proc = edgevision("predict", "--model", det, "--then", cls, str(tmp_path / "red"),
                      "--draw", str(tmp_path / "drawn"))
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.splitlines()[0])
    assert record["task"] == "chain" and (tmp_path / "drawn" / "a.png").is_file()
    assert "accuracy 1.0000 on the 1 whose folder names a label" in proc.stderr
    assert_one_line_error(edgevision("run", "--model", cls, "--then", det, "--source", str(tmp_path / "red")),
                          "detection model first")
    assert_one_line_error(edgevision("predict", "--model", det, "--crop-margin", "0.2", str(tmp_path / "red")),
                          "--crop-margin is for --then")


def test_eval_prints_ap50_and_the_chain_accuracy(tiny_model, tmp_path):
    # The tiny detector always finds 'cat' at (0.1..0.5) of the frame and 'dog' at (0.6..0.9).
    folder = tmp_path / "val" / "red"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), solid_frame(96, 128))
    _voc(folder / "a.xml", "my-cat", (13, 10, 64, 48))
    proc = edgevision("eval", "--model", str(tiny_model("detect")), "--then", str(tiny_model("classify")),
                      str(tmp_path / "val"), "--rename", "*-cat:cat")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["per_class"]["cat"]["ap50"] == 1.0 and report["per_class"]["cat"]["true_boxes"] == 1
    assert report["chain_accuracy"] == 1.0 and "AP50 1.0000 on 1 images" in proc.stderr
    assert_one_line_error(edgevision("eval", "--model", str(tiny_model("detect")), str(tmp_path / "val"),
                                     "--rename", "*-cat:lion"), "--rename takes PATTERN:CLASS")
    assert_one_line_error(edgevision("eval", "--model", str(tiny_model("classify")), str(tmp_path / "val")),
                          "eval scores detection models")


def test_crops_cuts_labelled_boxes_into_class_folders_and_never_overwrites(tmp_path):
    for split in ("train", "val"):
        (tmp_path / "boxes" / split).mkdir(parents=True)
        frame = solid_frame(96, 128, (0, 255, 0))
        cv2.imwrite(str(tmp_path / "boxes" / split / "a.jpg"), frame)
        _voc(tmp_path / "boxes" / split / "a.xml", "3-hand", (20, 20, 60, 80))
    out = tmp_path / "crops"
    proc = edgevision("crops", str(tmp_path / "boxes"), str(out), "--label-regex", r"(\d)-hand", "--jitter", "2")
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "train" / "3").glob("*.jpg"))) == 3  # the crop and 2 jittered copies
    assert len(list((out / "val" / "3").glob("*.jpg"))) == 1
    assert_one_line_error(edgevision("crops", str(tmp_path / "boxes"), str(out)), "not empty")


def test_crops_without_a_split_keeps_every_box_of_an_image_on_one_side(tmp_path):
    for i in range(10):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), solid_frame(96, 128, (0, 255, 0)))
        _voc(tmp_path / f"{i}.xml", "2-hand", (20, 20, 60, 80))
    proc = edgevision("crops", str(tmp_path), str(tmp_path / "out"), "--label-regex", r"(\d)-hand", "--jitter", "3")
    assert proc.returncode == 0, proc.stderr
    train = {p.name.split("_")[0] for p in (tmp_path / "out" / "train" / "2").glob("*.jpg")}
    val = {p.name.split("_")[0] for p in (tmp_path / "out" / "val" / "2").glob("*.jpg")}
    assert len(val) == 2 and len(train) == 8 and not train & val
    assert len(list((tmp_path / "out" / "val" / "2").glob("*_j*.jpg"))) == 0


def test_crops_refuses_box_names_that_would_leave_the_output_folder(tmp_path):
    (tmp_path / "boxes").mkdir()
    for i, name in enumerate(["../../escaped", "/abs/x", "ok"]):
        cv2.imwrite(str(tmp_path / "boxes" / f"{i}.jpg"), solid_frame(96, 128))
        _voc(tmp_path / "boxes" / f"{i}.xml", name, (20, 20, 60, 80))
    proc = edgevision("crops", str(tmp_path / "boxes"), str(tmp_path / "a" / "out"), "--jitter", "0")
    assert proc.returncode == 0, proc.stderr
    assert "2 boxes whose label is not a plain folder name" in proc.stderr
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jpg") if "boxes" not in p.parts)
    assert all(p.parts[:2] == ("a", "out") for p in written) and {p.parts[3] for p in written} == {"ok"}


def test_crops_cuts_the_detectors_box_or_the_whole_photo_from_class_folders(tiny_model, tmp_path):
    for split in ("train", "val"):
        for label in ("up", "down"):
            folder = tmp_path / "photos" / split / label
            folder.mkdir(parents=True)
            cv2.imwrite(str(folder / "a.png"), solid_frame(100, 100, (0, 255, 0)))
    det = str(tiny_model("detect"))
    proc = edgevision("crops", str(tmp_path / "photos"), str(tmp_path / "det"), "--boxes", "detector",
                      "--detector", det, "--jitter", "1", "--providers", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "det" / "train" / "up").glob("*.jpg"))) == 2  # the box and one jittered copy
    patch = cv2.imread(str(next((tmp_path / "det" / "val" / "down").glob("*.jpg"))))
    assert patch.shape == (224, 224, 3)
    assert "detector's most confident box" in (tmp_path / "det" / "SOURCE.md").read_text()
    proc = edgevision("crops", str(tmp_path / "photos"), str(tmp_path / "whole"), "--boxes", "whole", "--jitter", "0")
    assert proc.returncode == 0, proc.stderr
    patch = cv2.imread(str(next((tmp_path / "whole" / "val" / "up").glob("*.jpg"))))
    assert abs(int(patch[112, 112, 1]) - 255) < 8 and abs(int(patch[2, 2, 1]) - 114) < 8  # grey margin around it
    assert_one_line_error(edgevision("crops", str(tmp_path / "photos"), str(tmp_path / "x"), "--boxes", "detector"),
                          "go together")


@pytest.mark.train
def test_train_prints_progress_on_stderr_and_nothing_on_stdout(tmp_path):
    pytest.importorskip("tensorflow")
    import cv2
    import numpy as np

    for label, colour in (("red", (0, 0, 255)), ("blue", (255, 0, 0))):
        (tmp_path / "d" / label).mkdir(parents=True)
        for i in range(6):
            cv2.imwrite(str(tmp_path / "d" / label / f"{i}.png"), np.full((40, 40, 3), colour, np.uint8))
    proc = edgevision("train", str(tmp_path / "d"), "--backbone", "tiny", "--weights", "none", "--mode", "finetune",
                      "--epochs", "1", "--input-size", "32", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "run saved to" in proc.stderr and "finetune epoch" in proc.stderr


def test_every_command_says_what_it_does_and_every_argument_has_help():
    from edgevision.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, command in sub.choices.items():
        assert command.description, name
        assert not [a.dest for a in command._actions if not a.help], name


def test_pseudo_boxes_keeps_only_boxes_the_classifier_confirms(tiny_model, tmp_path):
    import numpy as np

    for label in ("green", "blue"):
        for split in ("train", "val"):
            folder = tmp_path / "photos" / split / label
            folder.mkdir(parents=True)
            frame = np.zeros((100, 100, 3), np.uint8)
            frame[10:50, 10:50] = (0, 255, 0)  # the tiny detector's top box holds green
            cv2.imwrite(str(folder / "a.png"), frame)
    proc = edgevision("pseudo-boxes", str(tmp_path / "photos"), str(tmp_path / "out"), "--detector",
                      str(tiny_model("detect")), "--confirm", str(tiny_model("classify")), "--providers", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "train: 1 photos boxed, 0 without a box, 1 not confirmed" in proc.stderr
    xml = (tmp_path / "out" / "train" / "green" / "a.xml").read_text()
    assert "<name>hand</name>" in xml and "<xmin>11</xmin>" in xml
    assert not (tmp_path / "out" / "train" / "blue").exists()
    assert "Command: edgevision pseudo-boxes" in (tmp_path / "out" / "SOURCE.md").read_text()
    assert_one_line_error(edgevision("pseudo-boxes", str(tmp_path / "photos"), str(tmp_path / "o2"), "--detector",
                                     str(tiny_model("classify"))), "--detector needs a detect model")


def test_no_command_lists_the_commands_and_version_is_said():
    proc = edgevision()
    assert proc.returncode == 2 and "collect" in proc.stderr and "predict" in proc.stderr
    proc = edgevision("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("edgevision ")


def test_info_on_a_pipeline_file_gives_its_settings_and_each_model(tiny_model, tmp_path):
    import json

    tiny_model("detect", "det.onnx")
    tiny_model("classify", "cls.onnx")
    pipeline = tiny_model("classify").parent / "chain.json"
    pipeline.write_text(json.dumps({"model": "det.onnx", "then": "cls.onnx", "crop_margin": 0.3}))
    proc = edgevision("info", str(pipeline))
    info = json.loads(proc.stdout)
    assert proc.returncode == 0 and info["crop_margin"] == 0.3
    assert [m["spec"]["kind"] for m in info["models"]] == ["detect", "classify"]


def test_record_and_jsonl_into_one_file_is_refused(tiny_model, synthetic_video, tmp_path):
    out = tmp_path / "same.mp4"
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(synthetic_video(5)),
                      "--no-display", "--record", str(out), "--jsonl", str(out))
    assert_one_line_error(proc, "are both")
    assert not out.exists()

"""The fault suite: full disks, unwritable files, path escapes, hostile labels and URLs, options that
do nothing or too much. Each case ends in one line and a non-zero exit (or is made safe), never a
traceback, and what was done before the fault is kept."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
from pathlib import Path

import cv2
import pytest
from conftest import solid_frame
from test_cli import EDGEVISION, HEADLESS, assert_one_line_error, edgevision

SAMPLE_CLIP = Path(__file__).resolve().parents[1] / "camera" / "samples" / "thumbs_demo.mp4"


def _small_files(limit: int):
    """preexec_fn: the child may write files of at most ``limit`` bytes (a disk that fills up)."""
    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_files


def _run_limited(limit: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEVISION, *args], capture_output=True, text=True, env=HEADLESS, timeout=120,
                          preexec_fn=_small_files(limit))


def test_jsonl_on_a_full_disk_stops_with_one_line_and_keeps_complete_lines(tiny_model, synthetic_video, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = _run_limited(3000, "run", "--model", str(tiny_model("classify")), "--source", str(synthetic_video(60)),
                        "--no-display", "--jsonl", str(out))
    assert_one_line_error(proc, "failed", "complete lines")
    lines = out.read_text().splitlines()
    assert lines and all(json.loads(line)["result"]["task"] == "classify" for line in lines[:-1])


def test_dev_full_as_jsonl_is_one_line_not_a_traceback(tiny_model, synthetic_video):
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(synthetic_video(5)),
                      "--no-display", "--jsonl", "/dev/full", "--overwrite")
    assert_one_line_error(proc, "/dev/full", "No space left")


def test_predict_draw_on_a_full_disk_says_so_and_exits_non_zero(tiny_model, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)  # does not compress
    for i in range(3):
        cv2.imwrite(str(photos / f"{i}.png"), noise)
    proc = _run_limited(50_000, "predict", "--model", str(tiny_model("classify")), str(photos),
                        "--draw", str(tmp_path / "drawn"))
    assert_one_line_error(proc, "could not write", "disk full")


def test_predict_masks_into_a_file_is_refused(tiny_model, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), solid_frame(20, 20))
    (tmp_path / "masks").write_text("a file")
    proc = edgevision("predict", "--model", str(tiny_model("segment")), str(tmp_path / "a.png"),
                      "--masks", str(tmp_path / "masks"))
    assert_one_line_error(proc, "is a file")


def test_predict_draw_over_class_folders_that_repeat_a_file_name_draws_both(tiny_model, tmp_path):
    for label in ("red", "blue"):
        (tmp_path / "data" / label).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "data" / label / "0001.png"), solid_frame(20, 20))
    proc = edgevision("predict", "--model", str(tiny_model("classify")), str(tmp_path / "data"),
                      "--draw", str(tmp_path / "drawn"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["0001.png", "red_0001.png"]


def test_overwrite_never_replaces_the_source_video(tiny_model, synthetic_video):
    clip = synthetic_video(5)
    before = clip.read_bytes()
    for flag in ("--record", "--jsonl"):
        proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(clip), "--no-display",
                          flag, str(clip), "--overwrite")
        assert_one_line_error(proc, "is the source itself")
    assert clip.read_bytes() == before


def test_stream_credentials_are_never_printed(tiny_model):
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source",
                      "http://admin:secret@127.0.0.1:9/video", "--no-display", timeout=180)
    assert proc.returncode != 0 and "secret" not in proc.stdout + proc.stderr
    assert "admin:***@127.0.0.1" in proc.stderr


def test_labels_with_terminal_escapes_are_printed_escaped(tmp_path, synthetic_video):
    import tinymodels

    model = tinymodels.save("classify", tmp_path / "evil.onnx",
                            spec={"labels": ["\x1b[2Jred\nFAKE", "green", "blue"]})
    proc = edgevision("run", "--model", str(model), "--source", str(synthetic_video(3)), "--no-display")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr and "\\x1b[2Jred\\nFAKE" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--source", "99999999999999999999"], "out of range"),
    (["--source", "x" * 300 + ".mp4"], "File name too long"),
    (["--jsonl", "y" * 300 + ".jsonl"], "too long"),
    (["--threads", "100000"], "--threads must be"),
])
def test_hostile_arguments_end_in_one_line(tiny_model, args, message):
    base = {"--source": str(SAMPLE_CLIP)}
    argv = ["run", "--model", str(tiny_model("classify")), "--no-display", "--max-frames", "2"]
    if "--source" not in args:
        argv += ["--source", base["--source"]]
    assert_one_line_error(edgevision(*argv, *args), message)


@pytest.mark.train
def test_training_refuses_a_class_with_no_readable_image_and_flags_without_export(tmp_path):
    pytest.importorskip("tensorflow")
    for label in ("good", "bad"):
        (tmp_path / "d" / label).mkdir(parents=True)
        for i in range(4):
            path = tmp_path / "d" / label / f"{i}.png"
            if label == "good":
                cv2.imwrite(str(path), solid_frame(32, 32))
            else:
                path.write_bytes(b"not an image")
    common = ["--backbone", "tiny", "--weights", "none", "--mode", "finetune", "--runs-dir", str(tmp_path / "r")]
    assert_one_line_error(edgevision("train", str(tmp_path / "d"), *common), "'bad' has no readable training image")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())  # no metrics.json saying 1.0
    assert_one_line_error(edgevision("train", str(tmp_path / "d"), "--int8", *common), "go with --export")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data = "{tmp_path / "d"}"\nname = "../../escape"\n')
    assert_one_line_error(edgevision("train", "--config", str(cfg), *common), "plain folder name")


def test_export_with_an_impossible_opset_is_one_line(tmp_path):
    pytest.importorskip("tensorflow")
    assert_one_line_error(edgevision("export", str(tmp_path), "--out", str(tmp_path / "m.onnx"), "--opset", "99"),
                          "--opset must be within 13..21")


def test_python_api_masks_credentials_too():
    from edgevision.deploy.errors import mask_credentials

    assert mask_credentials("rtsp://cam:pa:ss@10.0.0.2/s") == "rtsp://cam:***@10.0.0.2/s"
    assert mask_credentials("file.mp4") == "file.mp4"


def test_a_model_whose_spec_disagrees_with_its_outputs_fails_at_load(tmp_path):
    import tinymodels
    from edgevision.deploy.errors import UserError
    from edgevision.deploy.runner import Runner, RunnerOptions

    model = tinymodels.save("classify", tmp_path / "liar.onnx", spec={"labels": ["a", "b"]})  # the graph gives 3
    with pytest.raises(UserError, match="outputs do not match its spec"):
        Runner(model, RunnerOptions(providers="cpu"))

"""What the user reads when something is off: the message names the right thing (a folder given as a
model, an empty pipeline path, the export target of a full disk), the native libraries' own lines
(FFmpeg, OpenCV, libpng) stay out of the terminal, hints print paths that paste into a shell, outputs
never go into folders made quietly, and ``import edgevision`` next to a clone finds the package."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import pytest
import tinymodels
from conftest import REPO, solid_frame
from edgevision.deploy.errors import shell_quote
from test_cli import EDGEVISION, HEADLESS, assert_one_line_error, edgevision
from test_faults import _small_files

SAMPLE_CLIP = REPO / "camera" / "samples" / "thumbs_demo.mp4"


def only_our_lines(stderr: str) -> None:
    """Every line on stderr is edgevision's own (no '[mov,mp4 @ 0x...]', '[ WARN:0@...]', 'libpng error')."""
    foreign = [line for line in stderr.splitlines() if line and not line.startswith("edgevision: ")]
    assert not foreign, stderr


# --- 15: messages that name the right thing -------------------------------------------------------------


def test_a_folder_given_as_model_is_called_a_folder_and_a_run_folder_points_to_export(tmp_path, synthetic_video):
    video = str(synthetic_video(3))
    proc = edgevision("run", "--model", str(tmp_path), "--source", video, "--no-display")
    assert_one_line_error(proc, f"{tmp_path} is a folder, not a model file")
    run = tmp_path / "runs" / "data-1"
    run.mkdir(parents=True)
    (run / "model.keras").write_bytes(b"")
    proc = edgevision("predict", "--model", str(run), video)
    assert_one_line_error(proc, "is a training run folder", f"edgevision export {run} --out models/NAME.onnx")


@pytest.mark.parametrize("body, words", [('{"model": ""}', '"model" path'), ('{"model": "a.onnx", "then": ""}',
                                                                              '"then" must be a model path')])
def test_an_empty_path_in_a_pipeline_file_is_named_not_read_as_its_folder(tmp_path, body, words):
    pipeline = tmp_path / "p.json"
    pipeline.write_text(body)
    assert_one_line_error(edgevision("info", str(pipeline)), words)


@pytest.fixture
def head_run(tmp_path):
    """A numpy head trained on a tiny backbone: its run folder, and the line that says how to export it."""
    backbone = tinymodels.save_backbone(tmp_path / "bb.onnx")
    data = tmp_path / "-my photos"  # a space, and a dash in front: the export hint must still paste
    tinymodels.colour_photos(data / "train", per_class=4)
    tinymodels.colour_photos(data / "val", per_class=2, seed=1)
    env = dict(HEADLESS, EDGEVISION_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([*EDGEVISION, "train", "./-my photos", "--backbone-onnx", str(backbone), "--input-size",
                           "32", "--head", "linear"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    hint = next(line for line in proc.stderr.splitlines() if "export it: " in line)
    return next((tmp_path / "runs").iterdir()), hint.split("export it: ", 1)[1], env


def test_a_head_export_on_a_full_disk_names_the_target_not_the_source(head_run, tmp_path):
    run, _, env = head_run
    out = tmp_path / "m.onnx"
    proc = subprocess.run([*EDGEVISION, "export", str(run), "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=120, preexec_fn=_small_files(600))  # the model is about 1 kB
    assert_one_line_error(proc, f"cannot write {out}", "File too large")
    assert str(run) not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".export-*"))


# --- 19: hints that paste into a shell ------------------------------------------------------------------


def test_the_export_hint_runs_as_printed_with_a_space_and_a_leading_dash(head_run, tmp_path):
    _, command, env = head_run
    assert command.startswith("edgevision export 'runs/-my photos-") and "'models/my_-my photos.onnx'" in command
    env = dict(env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")  # the venv's edgevision
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "models" / "my_-my photos.onnx").is_file()


@pytest.mark.parametrize("path", ["plain/x.onnx", "with space/x", "-x", "-", "it's", "a;b", "$HOME", "é b"])
def test_shell_quote_gives_back_the_path_through_bash(path):
    printed = subprocess.run(["bash", "-c", f"printf %s {shell_quote(path)}"], capture_output=True, text=True)
    assert os.path.normpath(printed.stdout) == os.path.normpath(path)
    assert not printed.stdout.startswith("-")  # never read as an option


def test_a_missing_output_folder_is_refused_with_a_mkdir_that_pastes(tmp_path, tiny_model, synthetic_video):
    model, video = str(tiny_model("classify")), str(synthetic_video(3))
    folder = "-new dir"
    proc = edgevision("run", "--model", model, "--source", video, "--record", f"./{folder}/out.mp4", cwd=tmp_path)
    assert_one_line_error(proc, "--record", "does not exist")
    assert not (tmp_path / folder).exists()  # nothing made quietly
    mkdir = re.search(r"\((mkdir -p .*)\)", proc.stderr).group(1)
    assert subprocess.run(["bash", "-c", mkdir], cwd=tmp_path).returncode == 0
    assert (tmp_path / folder).is_dir()


# --- 21: output folders are never made quietly ------------------------------------------------------------


@pytest.mark.parametrize("command, flag", [("run", "--record"), ("run", "--jsonl"), ("demo", "--record"),
                                           ("predict", "--draw"), ("predict", "--masks"),
                                           ("collect", "--live-head-out")])
def test_every_output_into_a_folder_that_does_not_exist_is_refused(tmp_path, tiny_model, synthetic_video, command,
                                                                     flag):
    missing = tmp_path / "nonexistent" / "dir"
    model, video = str(tiny_model("segment")), str(synthetic_video(3))
    args = {"run": ["--model", model, "--source", video], "demo": ["--model", model, "--source", video],
            "predict": ["--model", model, video], "collect": [str(tmp_path / "data"), "--classes", "a,b",
                                                              "--source", video, "--live-head", "knn"]}[command]
    name = {"--record": "out.mp4", "--jsonl": "out.jsonl", "--live-head-out": "head.onnx"}.get(flag, "shots")
    proc = edgevision(command, *args, flag, str(missing / name))
    assert_one_line_error(proc, flag, f"the folder {missing} does not exist")
    assert not (tmp_path / "nonexistent").exists() and not (tmp_path / "data").exists()


def test_a_draw_folder_is_made_inside_a_folder_that_exists(tmp_path, tiny_model):
    cv2.imwrite(str(tmp_path / "a.png"), solid_frame(30, 40))
    proc = edgevision("predict", "--model", str(tiny_model("classify")), str(tmp_path / "a.png"), "--draw",
                      str(tmp_path / "shots"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "shots" / "a.png").is_file()


# --- 16: FFmpeg's, OpenCV's and libpng's own lines stay out of the terminal -----------------------------------


def test_a_truncated_video_is_one_line_of_ours(tmp_path, tiny_model):
    clip = tmp_path / "cut.mp4"
    clip.write_bytes(SAMPLE_CLIP.read_bytes()[:30_000])  # its index (moov, at the end) is gone
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(clip), "--no-display")
    assert_one_line_error(proc, "cannot open video")
    only_our_lines(proc.stderr)


def test_broken_pngs_are_skipped_and_counted_without_libpng_lines(tmp_path, tiny_model):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), solid_frame(40, 60))
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # libpng: 'PNG input buffer is incomplete'
    flipped = bytearray(data)
    flipped[29] ^= 0xFF  # inside IHDR: libpng: 'IHDR: CRC error'
    (tmp_path / "crc.png").write_bytes(bytes(flipped))
    model = str(tiny_model("classify"))
    proc = edgevision("predict", "--model", model, str(tmp_path))
    assert proc.returncode == 0 and "1 images, 2 unreadable skipped" in proc.stderr, proc.stderr
    only_our_lines(proc.stderr)
    proc = edgevision("run", "--model", model, "--source", str(tmp_path), "--no-display")
    assert proc.returncode == 0 and "2 unreadable images skipped" in proc.stderr, proc.stderr
    only_our_lines(re.sub(r"(?m)^frame ", "edgevision: frame ", proc.stderr))  # the console sink's status


def test_a_stream_that_stalls_is_said_without_ffmpeg_or_opencv_lines(tiny_model):
    jpeg = cv2.imencode(".jpg", solid_frame(48, 64))[1].tobytes()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []

    def serve() -> None:  # each viewer gets three MJPEG frames, then nothing (bounded: four viewers)
        for _ in range(4):
            try:
                conn = server.accept()[0]
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=f\r\n\r\n")
                for _ in range(3):
                    conn.sendall(b"--f\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                                 + jpeg + b"\r\n")
                held.append(conn)
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    try:
        proc = edgevision("run", "--model", str(tiny_model("classify")), "--source",
                          f"http://127.0.0.1:{server.getsockname()[1]}/stream.mjpg", "--no-display",
                          "--stall-timeout", "1", "--reconnect-timeout", "2", timeout=90)
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    # not '[ WARN:0@5.0] global cap_ffmpeg_impl.hpp:435 ... Stream timeout triggered', not '[mjpeg @ 0x...]'
    only_our_lines(re.sub(r"(?m)^frame ", "edgevision: frame ", proc.stderr))  # the console sink's status


def test_benchmarks_given_a_missing_video_say_so_in_one_line():
    for tool in ("bench_run", "bench_serve"):
        proc = subprocess.run([sys.executable, "-m", f"edgevision.camera.{tool}", "--model",
                               str(REPO / "models" / "thumbs.onnx"), "--video", "no-such-clip.mp4"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{tool}: error: source not found: no-such-clip.mp4" in proc.stderr


# --- 21: import edgevision beside the clone ---------------------------------------------------------------


def test_import_edgevision_in_the_folder_that_holds_a_clone_finds_the_installed_package(tmp_path):
    (tmp_path / "edgevision").symlink_to(REPO, target_is_directory=True)  # a clone named as the package
    proc = subprocess.run([sys.executable, "-c", "import edgevision; print(edgevision.load.__module__)"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0 and "edgevision.camera.api" in proc.stdout, (
        "this venv's editable install finds the clone folder as a namespace package: it predates the strict "
        "editable mode in pyproject.toml; run 'pip install -e .' again\n" + proc.stderr)

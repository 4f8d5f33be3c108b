"""Faults of the disk itself, made real: a small filesystem that fills up (tmpfs), a file-size limit
(RLIMIT_FSIZE in the child) and read-only folders that stop root too (a read-only mount; chmod when
not root). Recording is finished playable before the disk runs out; every other write says so in one
line and exits non-zero."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import playable_frames
from test_cli import EDGEVISION, HEADLESS, assert_one_line_error, edgevision
from test_faults import _run_limited


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'}): needs root with CAP_SYS_ADMIN")


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB filesystem of its own (root only): a disk that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs as root)")
    where = tmp_path / "small"
    _mount_tmpfs(where, "size=6m")
    yield where
    subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody may write to, root included: a read-only mount as root, else chmod 555."""
    where = tmp_path / "ro"
    if os.geteuid() == 0:
        _mount_tmpfs(where, "ro,size=1m")
        yield where
        subprocess.run(["umount", str(where)], check=False)
    else:
        where.mkdir()
        where.chmod(0o555)
        yield where
        where.chmod(0o755)


@pytest.fixture
def noisy_video(tmp_path):
    """Random frames (they compress badly, so a recording grows fast)."""
    path = tmp_path / "noise.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(30):
        writer.write(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    writer.release()
    return path



def test_a_recording_on_a_filling_disk_is_finished_playable_and_the_run_stops(small_disk, noisy_video, tiny_model):
    out = small_disk / "out.mp4"
    proc = subprocess.run([*EDGEVISION, "run", "--model", str(tiny_model("classify")), "--source", str(noisy_video),
                           "--loop", "--no-display", "--record", str(out), "--max-frames", "3000"],
                          capture_output=True, text=True, env=HEADLESS, timeout=300)
    assert_one_line_error(proc, "disk is almost full", "and plays")
    frames = playable_frames(out)
    assert frames > 5 and f"finished at {frames} frames" in proc.stderr  # every frame said to be there plays


def test_a_recording_at_the_file_size_limit_is_finished_playable(noisy_video, tiny_model, tmp_path):
    out = tmp_path / "out.mp4"
    proc = _run_limited(6 << 20, "run", "--model", str(tiny_model("classify")), "--source", str(noisy_video),
                        "--loop", "--no-display", "--record", str(out), "--max-frames", "3000")
    assert_one_line_error(proc, "file-size limit", "and plays")
    assert playable_frames(out) > 5


def test_jsonl_on_a_filling_disk_keeps_complete_lines(small_disk, noisy_video, tiny_model):
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # leave about 20 KB
        f.write(b"\0" * (shutil.disk_usage(small_disk).free - 20_000))
    out = small_disk / "out.jsonl"
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(noisy_video), "--loop",
                      "--no-display", "--jsonl", str(out), "--max-frames", "3000")
    assert_one_line_error(proc, "No space left", "complete lines")
    lines = out.read_text().splitlines()
    assert len(lines) > 10 and all(line.endswith("}") for line in lines[:-1])


@pytest.mark.parametrize("flag, name", [("--jsonl", "out.jsonl"), ("--record", "out.mp4")])
def test_run_outputs_in_a_read_only_folder_are_one_line(read_only, tiny_model, synthetic_video, flag, name):
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(synthetic_video(5)),
                      "--no-display", flag, str(read_only / name))
    assert_one_line_error(proc, str(read_only / name), "cannot write" if flag == "--jsonl" else "cannot write")


def test_predict_draw_and_collect_in_a_read_only_folder_are_one_line(read_only, tiny_model, tmp_path):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    proc = edgevision("predict", "--model", str(tiny_model("classify")), str(image), "--draw", str(read_only / "d"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "edgevision: error:" in proc.stderr
    proc = edgevision("collect", str(read_only / "data"), "--classes", "a,b", "--source", str(image),
                      "--serve", "0")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "edgevision: error:" in proc.stderr


def test_crops_into_a_read_only_folder_is_one_line(read_only, tmp_path):
    data = tmp_path / "boxes"
    data.mkdir()
    cv2.imwrite(str(data / "a.jpg"), np.zeros((64, 64, 3), np.uint8))
    (data / "a.xml").write_text("<annotation><object><name>hand</name><bndbox><xmin>5</xmin><ymin>5</ymin>"
                                "<xmax>40</xmax><ymax>40</ymax></bndbox></object></annotation>")
    proc = edgevision("crops", str(data), str(read_only / f"crops-{uuid.uuid4().hex[:6]}"))
    assert_one_line_error(proc)

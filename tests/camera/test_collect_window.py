"""The collect window for real: Xvfb, xdotool key presses and clicks, files on disk.

Skipped where Xvfb or xdotool is missing (Debian: apt-get install xvfb xdotool).
"""

import csv
import os
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("xdotool")),
    reason="needs Xvfb and xdotool (apt-get install xvfb xdotool)",
)


@pytest.fixture
def display():
    for number in range(140, 160):
        if not os.path.exists(f"/tmp/.X11-unix/X{number}") and not os.path.exists(f"/tmp/.X{number}-lock"):
            break
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x800x24"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15  # a busy machine can take seconds to bring Xvfb up
    while not os.path.exists(f"/tmp/.X11-unix/X{number}") and time.monotonic() < deadline:
        time.sleep(0.1)
    env = dict(os.environ, DISPLAY=f":{number}")
    while subprocess.run(["xdotool", "getmouselocation"], env=env, capture_output=True).returncode:
        if time.monotonic() > deadline:
            pytest.fail(f"Xvfb :{number} did not accept connections within 15 s")
        time.sleep(0.1)
    yield env
    server.terminate()
    server.wait(timeout=10)


def xdo(env, *args):
    return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, timeout=10).stdout.strip()


def start_collect(env, *args):
    proc = subprocess.Popen([sys.executable, "-m", "edgevision.cli", "collect", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        window = xdo(env, "search", "--name", "edgevision collect").splitlines()
        if window:
            xdo(env, "windowfocus", window[0])
            time.sleep(0.3)
            return proc, window[0]
        time.sleep(0.2)
    proc.kill()
    pytest.fail("the collect window did not appear: " + proc.communicate()[1])


def video(path, frames, size_hw):
    h, w = size_hw
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    for i in range(frames):
        writer.write(np.full((h, w, 3), (i * 3) % 255, np.uint8))
    writer.release()
    return path


def test_keys_in_the_window_save_undo_and_quit(display, tmp_path):
    clip = video(tmp_path / "clip.mp4", 200, (240, 320))
    proc, _ = start_collect(display, str(tmp_path / "data"), "--classes", "a,b", "--source", str(clip))
    for key in ["1", "1", "2", "u", "2", "Tab"]:
        xdo(display, "key", key)
        time.sleep(0.3)
    xdo(display, "key", "q")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert len(list((tmp_path / "data" / "a").glob("*.jpg"))) == 2
    assert len(list((tmp_path / "data" / "b").glob("*.jpg"))) == 1
    assert len(list((tmp_path / "data" / ".trash" / "b").glob("*.jpg"))) == 1
    assert "saved 3 this session" in err and "edgevision train" in err


def test_a_click_in_a_scaled_window_is_stored_in_full_resolution_pixels(display, tmp_path):
    clip = video(tmp_path / "big.mp4", 200, (1440, 2560))  # shown at half size
    proc, window = start_collect(display, str(tmp_path / "faces"), "--points", "nose", "--source", str(clip))
    labels = tmp_path / "faces" / "labels.csv"
    for _ in range(5):  # a busy machine may drop the first events while the window settles: try again
        xdo(display, "mousemove", "--window", window, "300", "200", "click", "1")
        time.sleep(0.4)
        xdo(display, "key", "Return")
        deadline = time.time() + 3
        while not labels.exists() and time.time() < deadline:
            time.sleep(0.1)
        if labels.exists():
            break
    xdo(display, "key", "q")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    with open(tmp_path / "faces" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 1
    assert abs(float(rows[0]["nose_x"]) - 600.5) <= 2 and abs(float(rows[0]["nose_y"]) - 400.5) <= 2
    saved = cv2.imread(str(tmp_path / "faces" / "images" / rows[0]["file"]))
    assert saved.shape == (1440, 2560, 3)  # full resolution, not the window's


def test_the_live_knn_head_learns_from_saves_and_enter_exports_it(display, tmp_path):
    import tinymodels
    from edgevision.deploy.runner import Runner, RunnerOptions

    clip = video(tmp_path / "clip.mp4", 400, (240, 320))
    backbone = tinymodels.save_backbone(tmp_path / "bb.onnx")
    out = tmp_path / "live.onnx"
    out.write_bytes(b"the user's own file")  # never overwritten: the export takes the next free name
    proc, _ = start_collect(display, str(tmp_path / "data"), "--classes", "a,b", "--source", str(clip),
                            "--live-head", "knn", "--backbone-onnx", str(backbone), "--live-head-out", str(out))
    exported = tmp_path / "live-2.onnx"
    for key in ["1", "2", "s"]:
        xdo(display, "key", key)
        time.sleep(0.3)
    for _ in range(5):  # the worker embeds in the background: Enter before it has two classes says so
        xdo(display, "key", "Return")
        deadline = time.time() + 3
        while not exported.exists() and time.time() < deadline:
            time.sleep(0.1)
        if exported.exists():
            break
    xdo(display, "key", "q")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.read_bytes() == b"the user's own file"
    assert f"exported the live kNN head to {exported}" in err
    assert len(list((tmp_path / "data" / "b").glob("*.jpg"))) == 2  # 's' saved to the active class
    runner = Runner(exported, RunnerOptions(providers="cpu"))
    assert runner.spec.labels == ("a", "b") and runner.spec.kind == "classify"

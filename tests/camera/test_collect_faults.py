"""collect's faults, made real: a second collector on the same folder (real processes), a disk that
fills up (a small tmpfs, as tests/test_faults_disk.py makes it), malformed and Excel (BOM) label files,
and Ctrl-C / SIGTERM on a running 'edgevision collect'."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from urllib.parse import quote, unquote

import cv2
import numpy as np
import pytest
from edgevision.camera import collect as C
from edgevision.camera import collect_files as F
from edgevision.camera.review import Reviewer
from edgevision.deploy.errors import UserError
from test_cli import EDGEVISION, HEADLESS
from test_faults_disk import noisy_video, small_disk  # noqa: F401  the fixtures

NOISE = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)  # ~150 KB as a JPEG


def _sigint_as_usual() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a test run in the background may have it ignored


class Collecting:
    """'edgevision collect ... --serve 0' in a child process, driven over HTTP as its page drives it (with
    the page's token when the printed URL carries one)."""

    def __init__(self, *args) -> None:
        self.proc = subprocess.Popen([*EDGEVISION, "collect", *map(str, args), "--serve", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=HEADLESS,
                                     preexec_fn=_sigint_as_usual)
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError("collect ended early:\n" + "".join(self.lines))
            self.lines.append(line)
            m = re.search(r"(http://\S+/)(\?token=(\S+))?", line)
            if m and "serving on" in line:
                self.url = m.group(1)
                self.query = f"?token={quote(unquote(m.group(3)), safe='')}" if m.group(3) else ""
                break
        else:
            raise AssertionError("no URL printed:\n" + "".join(self.lines))
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def post(self, path: str, body: dict) -> None:
        request = urllib.request.Request(self.url + path.lstrip("/") + self.query, data=json.dumps(body).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()

    def state(self) -> dict:
        with urllib.request.urlopen(self.url + "result" + self.query, timeout=10) as r:
            return (json.loads(r.read()) or {}).get("state") or {}

    def wait_state(self, key: str, value) -> None:
        deadline = time.monotonic() + 20
        while self.state().get(key) != value:
            assert time.monotonic() < deadline, f"{key} never became {value!r}: {self.state()}"
            time.sleep(0.1)

    def finish(self) -> str:
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        return "".join(self.lines)


@pytest.fixture
def collecting():
    running: list[Collecting] = []

    def start(*args) -> Collecting:
        running.append(Collecting(*args))
        return running[-1]

    yield start
    for c in running:
        if c.proc.poll() is None:
            c.proc.kill()
        c.proc.wait(timeout=30)


def collect_once(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEVISION, "collect", *map(str, args), "--serve", "0"], capture_output=True, text=True,
                          env=HEADLESS, timeout=120)


def one_error_line(proc_or_text, *fragments) -> str:
    text = proc_or_text if isinstance(proc_or_text, str) else proc_or_text.stderr
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("edgevision: error:")]
    assert len(lines) == 1, text
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def rows_of(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def points(root, names=("nose",), **kw) -> C.Collector:
    return C.Collector(C.CollectOptions(root=root, points=names, **kw))


def classes(root) -> C.Collector:
    return C.Collector(C.CollectOptions(root=root, classes=("a", "b")))


def save_point(col: C.Collector, image=NOISE, xy=(10.0, 20.0)) -> C.Saved | None:
    col.click(*xy, image)
    return col.confirm(0.0)


def fill(disk, leave: int) -> None:
    """Fill the small disk until ``leave`` bytes (a multiple of its 4 KB pages) are free."""
    free = shutil.disk_usage(disk).free
    with open(disk / f"filler-{free}", "wb") as f:
        f.write(b"\0" * (free - leave))
    assert shutil.disk_usage(disk).free == leave


def whole_jpegs(folder) -> list[str]:
    """Every file in ``folder`` (hidden ones too) must be a whole JPEG; their names."""
    names = sorted(p.name for p in folder.iterdir())
    for name in names:
        data = (folder / name).read_bytes()
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", f"{name} is not a whole JPEG ({len(data)} bytes)"
    return names


# --- one collector per folder ----------------------------------------------------------------------------------

def test_the_dataset_lock_refuses_a_second_holder_with_the_first_ones_pid_and_is_gone_after(tmp_path):
    root = tmp_path / "data"
    with F.dataset_lock(root):
        with pytest.raises(UserError, match=rf"{re.escape(str(root))} is in use by another edgevision collect "
                                            rf"\(pid {os.getpid()}\)"):
            with F.dataset_lock(root):
                pass
    assert not (root / F.LOCK_FILE).exists()
    with F.dataset_lock(root):  # free again
        pass


def test_a_second_collect_on_a_folder_is_refused_and_no_label_is_lost(collecting, synthetic_video, tmp_path):
    data = tmp_path / "faces"
    clip = synthetic_video(600, size=(96, 128))
    first = collecting(data, "--points", "nose", "--source", clip)
    for args in (("--source", clip), ("--review",)):  # neither collecting nor reviewing beside it
        proc = collect_once(data, "--points", "nose", *args)
        assert proc.returncode == 2
        one_error_line(proc, f"{data} is in use by another edgevision collect (pid {first.proc.pid})")
    for i in range(3):  # three saves, the last undone
        first.post("/click", {"x": 10.0 + i, "y": 20.0})
        first.post("/key", {"key": "Enter"})
        first.wait_state("saved_this_session", i + 1)
    first.post("/key", {"key": "u"})
    first.wait_state("saved_this_session", 2)
    rows = rows_of(data / "labels.csv")
    assert [r["nose_x"] for r in rows] == ["10.0", "11.0"]
    assert sorted(p.name for p in (data / "images").iterdir()) == sorted(r["file"] for r in rows)
    first.proc.kill()  # killed: the OS lets go of its lock, so the folder opens again at once
    first.finish()
    review = collecting(data, "--points", "nose", "--review")
    review.wait_state("review", {"index": 0, "total": 2, "file": rows[0]["file"], "label": "images"})
    review.post("/key", {"key": "q"})
    assert review.proc.wait(timeout=30) == 0


# --- a full disk -----------------------------------------------------------------------------------------------

def test_a_full_disk_in_class_mode_leaves_no_short_photo_and_says_which_folder(small_disk):  # noqa: F811
    root = small_disk / "data"
    col = classes(root)
    col.save_class(NOISE, 0)
    col.save_class(NOISE, 0)
    fill(small_disk, 64 << 10)  # less than a photo
    with pytest.raises(UserError, match=rf"cannot save into {re.escape(str(root / 'a'))}: No space left on device"):
        col.save_class(NOISE, 0)
    assert len(whole_jpegs(root / "a")) == 2  # no short photo, no temporary file left
    assert classes(root).count("a") == 2


def test_a_full_disk_at_the_first_points_save_leaves_a_folder_that_opens_again(small_disk):  # noqa: F811
    root = small_disk / "faces"
    jpeg = cv2.imencode(".jpg", NOISE, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].size
    (root / "images").mkdir(parents=True)
    fill(small_disk, math.ceil(jpeg / 4096) * 4096)  # room for the photo, not for labels.csv
    col = points(root)
    with pytest.raises(UserError, match=f"cannot save into {re.escape(str(root))}: No space left"):
        save_point(col)
    assert not list((root / "images").iterdir())  # the photo without its row is not kept
    assert not (root / "labels.csv").exists() or rows_of(root / "labels.csv") == []
    assert points(root).count() == 0  # the folder opens again


def test_a_full_disk_in_points_mode_keeps_labels_csv_whole_and_undo_changes_nothing(small_disk):  # noqa: F811
    root = small_disk / "faces"
    col = points(root)
    first = save_point(col, xy=(5.0, 6.0))
    second = save_point(col, xy=(7.0, 8.0))
    before = (root / "labels.csv").read_bytes()
    fill(small_disk, 0)
    with pytest.raises(UserError, match=f"cannot save into {re.escape(str(root))}: No space left"):
        save_point(col)
    with pytest.raises(UserError, match=f"cannot change {re.escape(str(root))}: No space left"):
        col.undo()  # labels.csv cannot be rewritten: the photo stays with its row
    assert (root / "labels.csv").read_bytes() == before
    assert whole_jpegs(root / "images") == sorted([first.path.name, second.path.name])
    again = points(root)
    assert again.count() == 2
    assert [p.name for p in Reviewer(again).items] == [first.path.name, second.path.name]


def test_collect_on_a_filling_disk_stops_with_one_line_and_keeps_its_photos(collecting, small_disk, noisy_video):  # noqa: F811
    data = small_disk / "data"
    c = collecting(data, "--classes", "a,b", "--source", noisy_video, "--loop")
    c.post("/key", {"key": "1"})
    c.wait_state("saved_this_session", 1)
    fill(small_disk, 16 << 10)
    c.post("/key", {"key": "1"})
    assert c.proc.wait(timeout=30) == 2
    one_error_line(c.finish(), f"cannot save into {data / 'a'}: No space left on device")
    assert len(whole_jpegs(data / "a")) == 1


def test_an_empty_labels_csv_from_an_older_collect_opens_and_the_next_save_writes_its_header(tmp_path):
    (tmp_path / "labels.csv").write_bytes(b"")
    col = points(tmp_path)
    assert col.count() == 0
    saved = save_point(col)
    assert rows_of(tmp_path / "labels.csv") == [{"file": saved.path.name, "nose_x": "10.0", "nose_y": "20.0"}]


# --- label files made by hand or by Excel ------------------------------------------------------------------------

@pytest.mark.parametrize("row, cell", [
    ("a.png,10,", "nose_y is ''"),
    ("a.png,10", "nose_y is missing"),
    ("a.png,ten,5", "nose_x is 'ten'"),
    ("a.png,nan,5", "nose_x is 'nan'"),
    (",1,2", "the file cell is empty"),
    ("a.png,1,2,3", "has 4 cells, the header 3"),
])
def test_a_malformed_csv_cell_is_one_line_naming_the_file_line_and_cell(tmp_path, row, cell):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(f"file,nose_x,nose_y\nb.png,1,2\n\n{row}\n")
    with pytest.raises(UserError) as err:
        Reviewer(points(tmp_path))
    assert str(err.value).startswith(f"{csv_path} line 4") and cell in str(err.value)


def test_review_of_a_malformed_csv_exits_2_with_one_line_not_a_traceback(tmp_path):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((40, 40, 3), np.uint8))
    (tmp_path / "labels.csv").write_text("file,nose_x,nose_y\na.png,10,\n")
    proc = collect_once(tmp_path, "--points", "nose", "--review")
    assert proc.returncode == 2
    one_error_line(proc, f"{tmp_path / 'labels.csv'} line 2: nose_y is ''")


def test_a_csv_saved_by_excel_with_a_bom_is_read_and_kept(tmp_path):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((40, 40, 3), np.uint8))
    (tmp_path / "labels.csv").write_bytes("\ufefffile,nose_x,nose_y\r\na.png,12.5,7\r\n".encode())
    col = points(tmp_path)
    assert col.count() == 1
    assert Reviewer(points(tmp_path)).points_of(tmp_path / "images" / "a.png") == [(12.5, 7.0)]
    saved = save_point(col, xy=(3.0, 4.0))
    assert [r["file"] for r in rows_of(tmp_path / "labels.csv")] == ["a.png", saved.path.name]
    col.undo()
    assert rows_of(tmp_path / "labels.csv") == [{"file": "a.png", "nose_x": "12.5", "nose_y": "7"}]


def test_a_save_goes_under_the_csvs_own_columns_and_undo_keeps_every_other_cell(tmp_path):
    (tmp_path / "labels.csv").write_text("file,nose_y,note,nose_x\na.png,7,by hand,12.5\n")
    col = points(tmp_path)
    saved = save_point(col, xy=(3.0, 4.0))
    assert rows_of(tmp_path / "labels.csv")[1] == {"file": saved.path.name, "nose_y": "4.0", "note": "",
                                                   "nose_x": "3.0"}
    col.undo()
    assert rows_of(tmp_path / "labels.csv") == [{"file": "a.png", "nose_y": "7", "note": "by hand", "nose_x": "12.5"}]


# --- Ctrl-C and SIGTERM --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig, code, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_stops_collect_with_its_exit_code_after_the_summary(collecting, synthetic_video, tmp_path, sig,
                                                                    code, name):
    data = tmp_path / "data"
    c = collecting(data, "--classes", "a,b", "--source", synthetic_video(600), "--loop")
    c.post("/key", {"key": "2"})
    c.wait_state("saved_this_session", 1)
    c.proc.send_signal(sig)
    assert c.proc.wait(timeout=30) == code
    err = c.finish()
    assert "Traceback" not in err and "saved 1 this session" in err and f"stopped ({name})" in err
    assert len(whole_jpegs(data / "b")) == 1 and not (data / F.LOCK_FILE).exists()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_review_with_its_exit_code(collecting, tmp_path, sig, code):
    classes(tmp_path).save_class(NOISE, 0)
    c = collecting(tmp_path, "--classes", "a,b", "--review")
    c.wait_state("mode", "review")
    c.proc.send_signal(sig)
    assert c.proc.wait(timeout=30) == code
    assert "Traceback" not in c.finish()
    assert len(whole_jpegs(tmp_path / "a")) == 1

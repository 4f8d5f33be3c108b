"""Bad inputs to the runtime, as a user runs them: pipes given as images, JSON nested past Python's parser,
image bombs, full disks under --masks, runs that read nothing, outputs aimed at inputs. Each ends in one
line (and the exit code the README gives), never a hang, a traceback or a lost file."""

from __future__ import annotations

import json
import os
import resource
import signal
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import solid_frame
from test_cli import EDGEVISION, HEADLESS, assert_one_line_error, edgevision

NESTED = "[" * 100_000 + "]" * 100_000


def bomb_png(path: Path, w: int = 20_000, h: int = 20_000) -> Path:
    """A real, valid PNG of one grey level, ``w`` x ``h`` (1.2 GB as BGR), 0.4 MB on disk, made in well
    under a second: one deflate block of zero rows, flushed so that it stands alone, repeated."""
    rows = max(1, (1 << 21) // (w + 1))
    block_raw = bytes(rows * (w + 1))  # filter byte 0 + w zeros, per row
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(block_raw) + c.flush(zlib.Z_FULL_FLUSH)
    full, rest = divmod(h, rows)
    tail_raw = bytes(rest * (w + 1))
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    adler = 1
    for _ in range(full):
        adler = zlib.adler32(block_raw, adler)
    adler = zlib.adler32(tail_raw, adler)
    idat = b"\x78\xda" + block * full + c.compress(tail_raw) + c.flush() + struct.pack(">I", adler)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def _limited(address_space: int | None = None, file_size: int | None = None):
    """preexec_fn: a small device (``address_space`` bytes of memory) or a nearly full disk (files of at
    most ``file_size`` bytes; a write past it fails instead of killing the process)."""
    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if file_size is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    return limit


def _run(*args: str, env: dict | None = None, timeout: float = 120, **limits) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEVISION, *map(str, args)], capture_output=True, text=True, env=env or HEADLESS,
                          timeout=timeout, preexec_fn=_limited(**limits))


def _skipped_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("edgevision: skipped: ")]


# 4. A pipe given as an image is refused without opening it (np.fromfile waited for a writer forever).

def test_a_pipe_given_as_the_image_source_is_skipped_not_waited_on(tiny_model, tmp_path):
    fifo = tmp_path / "camera.png"
    os.mkfifo(fifo)
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", str(fifo), "--no-display",
                      timeout=60)  # a hang fails here, as TimeoutExpired
    assert proc.returncode == 1, proc.stderr  # nothing could be read: as predict
    assert "Traceback" not in proc.stderr
    assert _skipped_lines(proc) == [f"edgevision: skipped: {fifo} is a pipe, not an image file"]


def test_a_pipe_in_an_image_folder_or_named_to_predict_never_blocks(tiny_model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), solid_frame(20, 30))
    os.mkfifo(folder / "b.png")
    model = str(tiny_model("classify"))
    proc = edgevision("run", "--model", model, "--source", str(folder), "--no-display", timeout=60)
    assert proc.returncode == 0 and "1 frames" in proc.stderr, proc.stderr
    assert_one_line_error(edgevision("predict", "--model", model, str(folder / "b.png"), timeout=60),
                          "is not a regular file (a pipe or device)")


def test_a_pipe_as_a_pipeline_file_is_one_line(tmp_path):
    fifo = tmp_path / "chain.json"
    os.mkfifo(fifo)
    assert_one_line_error(edgevision("info", str(fifo), timeout=60), "not a regular file")


# 9. JSON nested past Python's parser (RecursionError) in a pipeline file or a model's spec.

def test_deeply_nested_json_in_a_pipeline_file_is_one_line(tiny_model, tmp_path):
    pipeline = tmp_path / "chain.json"
    pipeline.write_text(NESTED)
    for args in (["info", str(pipeline)], ["run", "--model", str(pipeline), "--source", "x.png", "--no-display"]):
        assert_one_line_error(edgevision(*args), str(pipeline), "nests its JSON too deep")


def test_deeply_nested_json_as_a_model_spec_is_one_line(tmp_path, synthetic_video):
    import onnx
    import tinymodels
    from edgevision.deploy.spec import SPEC_KEY

    model = tinymodels.build("classify")
    for prop in model.metadata_props:
        if prop.key == SPEC_KEY:
            prop.value = '{"kind": "classify", "input_hw": [32, 48], "labels": ' + NESTED + "}"
    path = tmp_path / "deep.onnx"
    onnx.save(model, path)
    for args in (["info", str(path)], ["run", "--model", str(path), "--source", str(synthetic_video(2)),
                                       "--no-display"]):
        assert_one_line_error(edgevision(*args), "deep.onnx has a bad edgevision spec", "nests its JSON too deep")


# 10. Specs that parse but cannot be fed: checked where the spec is made, said in one line at load.

@pytest.mark.parametrize("build, message", [
    # a graph of any input size: a MemoryError at the dry run, or all of a small device's memory
    ({"input_hw": ("h", "w"), "spec": {"input_hw": [100_000, 100_000]}}, "at most 4096 pixels a side"),
    ({"spec": {"mean": [float("nan"), 0, 0]}}, "mean must be finite"),  # was "score": NaN, which is not JSON
    ({"spec": {"std": [float("inf"), 1, 1]}}, "std must be finite"),  # was one answer for every frame, silently
])
def test_specs_that_cannot_be_fed_fail_at_load_in_one_line(tmp_path, synthetic_video, build, message):
    import tinymodels

    model = tinymodels.save("classify", tmp_path / "bad.onnx", **build)
    out = tmp_path / "out.jsonl"
    proc = _run("run", "--model", model, "--source", synthetic_video(3), "--no-display", "--jsonl", out,
                address_space=4 << 30)
    assert_one_line_error(proc, "bad.onnx has a bad edgevision spec", message)
    assert not out.exists()


def test_a_model_that_answers_nan_stops_with_one_line_instead_of_printing_nan(tmp_path, synthetic_video):
    import onnx
    import tinymodels
    from onnx import numpy_helper

    model = tinymodels.build("classify")  # a valid spec, a damaged weight
    for i, init in enumerate(model.graph.initializer):
        if init.name == "W":
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.full((3, 3), np.nan, np.float32), "W"))
    path = tmp_path / "damaged.onnx"
    onnx.save(model, path)
    cv2.imwrite(str(tmp_path / "a.png"), solid_frame(20, 20))
    proc = edgevision("predict", "--model", str(path), str(tmp_path / "a.png"))
    assert_one_line_error(proc, "the model's result for", "is not a finite number (NaN or infinity)")
    assert "NaN" not in proc.stdout
    out = tmp_path / "out.jsonl"
    proc = edgevision("run", "--model", str(path), "--source", str(synthetic_video(3)), "--no-display",
                      "--jsonl", str(out))
    assert_one_line_error(proc, "the model's result at frame 0 is not a finite number")
    assert out.read_text() == ""


# 11. Image bombs: the size is read from the header; over the limit is skipped with a line, never decoded.

def test_image_bombs_are_skipped_by_their_header_on_a_small_device(tiny_model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_good.png"), solid_frame(30, 40))
    bomb = bomb_png(folder / "b_bomb.png")
    for name in ("c_bomb.png", "d_bomb.png"):
        (folder / name).write_bytes(bomb.read_bytes())
    # 2 GiB of address space: one of these decoded (1.2 GB, 2.3 GB peak in OpenCV) does not fit
    proc = _run("predict", "--model", tiny_model("classify"), folder, address_space=2 << 30)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [json.loads(line)["file"] for line in proc.stdout.splitlines()] == [str(folder / "a_good.png")]
    assert _skipped_lines(proc) == [
        f"edgevision: skipped: {folder / name} is 20000x20000 (400 megapixels), over the limit of 100 "
        "megapixels (EDGEVISION_MAX_IMAGE_PIXELS raises it)" for name in ("b_bomb.png", "c_bomb.png", "d_bomb.png")]
    assert "1 images, 3 unreadable skipped" in proc.stderr


def test_the_pixel_limit_is_set_by_the_environment_for_every_format_opencv_reads(tiny_model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    frame = solid_frame(40, 50)
    cv2.imwrite(str(folder / "a.png"), frame)  # a header edgevision reads
    cv2.imwrite(str(folder / "b.ppm"), frame)  # one it does not: OpenCV's own limit, set from the same variable
    (folder / "b.ppm").rename(folder / "b.jpg")  # a suffix predict takes; OpenCV goes by the content
    model = tiny_model("classify")
    env = {**HEADLESS, "EDGEVISION_MAX_IMAGE_PIXELS": "1000"}
    env.pop("OPENCV_IO_MAX_IMAGE_PIXELS", None)
    proc = _run("run", "--model", model, "--source", folder, "--no-display", env=env)
    assert proc.returncode == 1, proc.stderr  # no image was read
    lines = _skipped_lines(proc)
    assert len(lines) == 2 and "a.png is 50x40 (0.002 megapixels), over the limit of 0.001" in lines[0]
    assert "b.jpg could not be decoded: over OpenCV's pixel limit (OPENCV_IO_MAX_IMAGE_PIXELS=1000)" in lines[1]
    env["EDGEVISION_MAX_IMAGE_PIXELS"] = "2000"  # 50x40 is at the limit, not over it
    proc = _run("run", "--model", model, "--source", folder, "--no-display", env=env)
    assert proc.returncode == 0 and "2 frames" in proc.stderr, proc.stderr
    env["EDGEVISION_MAX_IMAGE_PIXELS"] = "lots"
    assert_one_line_error(_run("predict", "--model", model, folder, env=env),
                          "EDGEVISION_MAX_IMAGE_PIXELS must be a number of pixels")


def test_train_knn_head_skips_image_bombs_with_a_line_each(tmp_path):
    import tinymodels

    backbone = tinymodels.save_backbone(tmp_path / "bb.onnx")
    data = tmp_path / "data"
    tinymodels.colour_photos(data / "train", per_class=3)
    tinymodels.colour_photos(data / "val", per_class=2, seed=1)
    bomb = bomb_png(data / "train" / "red" / "bomb1.png")
    (data / "train" / "green" / "bomb2.png").write_bytes(bomb.read_bytes())
    env = {**HEADLESS, "EDGEVISION_CACHE": str(tmp_path / "cache")}
    proc = _run("train", data, "--head", "knn", "--backbone-onnx", backbone, "--input-size", "32",
                "--runs-dir", tmp_path / "runs", env=env, address_space=3 << 30)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.startswith("skipped: ") and "bomb" in line]
    assert len(said) == 2 and all("over the limit of 100 megapixels" in line for line in said), proc.stderr
    assert "2 unreadable images skipped" in proc.stderr


# 12. A mask on a nearly full disk was a short PNG reported as written; 'run' on nothing readable exited 0.

def test_predict_masks_on_a_nearly_full_disk_say_so_and_leave_no_short_file(tiny_model, tmp_path):
    frame = np.zeros((300, 300, 3), np.uint8)
    frame[:150, :, 2] = 255  # half 'thing': a mask PNG of ~100 bytes, which cv2.imwrite called written
    cv2.imwrite(str(tmp_path / "half.png"), frame)
    masks = tmp_path / "masks"
    proc = _run("predict", "--model", tiny_model("segment"), tmp_path / "half.png", "--masks", masks, file_size=50)
    assert_one_line_error(proc, f"could not write {masks / 'half.png'}", "disk full")
    assert proc.stdout == ""  # no line names a mask that is not there
    assert list(masks.iterdir()) == []  # neither the short PNG nor its temporary file


def test_predict_draw_is_written_whole_under_its_name(tiny_model, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), solid_frame(30, 40))
    proc = edgevision("predict", "--model", str(tiny_model("classify")), str(tmp_path / "a.png"), "--draw",
                      str(tmp_path / "drawn"))
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "drawn").iterdir()] == ["a.png"]  # no temporary file left beside it
    drawn = cv2.imread(str(tmp_path / "drawn" / "a.png"))
    assert drawn.shape == (30, 40, 3) and oct((tmp_path / "drawn" / "a.png").stat().st_mode & 0o777) != "0o600"


@pytest.mark.parametrize("content", [b"not an image", b""])
def test_run_on_a_single_unreadable_image_exits_1_as_predict_does(tiny_model, tmp_path, content):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(content)
    model = str(tiny_model("classify"))
    run = edgevision("run", "--model", model, "--source", str(broken), "--no-display")
    predict = edgevision("predict", "--model", model, str(broken))
    assert run.returncode == predict.returncode == 1, run.stderr + predict.stderr
    assert "Traceback" not in run.stderr + predict.stderr
    assert len(_skipped_lines(run)) == len(_skipped_lines(predict)) == 1


# 17. Outputs aimed at inputs: the input folder (read again next time), the model file (even with --overwrite).

@pytest.mark.parametrize("flag", ["--draw", "--masks"])
@pytest.mark.parametrize("where", ["the folder", "inside it", "beside a file"])
def test_predict_refuses_to_write_into_its_input_folder(tiny_model, tmp_path, flag, where):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), solid_frame(20, 20))
    out, given = {"the folder": (photos, photos), "inside it": (photos / "drawn", photos),
                  "beside a file": (photos, photos / "a.png")}[where]
    proc = edgevision("predict", "--model", str(tiny_model("segment")), str(given), flag, str(out))
    assert_one_line_error(proc, f"{flag} {out}", "the input folder", "choose a folder outside the inputs")
    assert sorted(p.name for p in photos.iterdir()) == ["a.png"]  # nothing was written


def test_predict_may_write_into_a_new_folder_beside_the_files_it_was_given(tiny_model, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), solid_frame(20, 20))
    proc = edgevision("predict", "--model", str(tiny_model("classify")), str(tmp_path / "a.png"), "--draw",
                      str(tmp_path / "drawn"))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("flag", ["--jsonl", "--record"])
def test_run_never_writes_over_its_model_even_with_overwrite(tiny_model, synthetic_video, tmp_path, flag):
    det, cls = tiny_model("detect"), tiny_model("classify")
    pipeline = tmp_path / "chain.json"
    pipeline.write_text(json.dumps({"model": det.name, "then": cls.name}))
    os.link(cls, tmp_path / "another_name.onnx")
    os.symlink(det, tmp_path / "link.onnx")
    before = {p: p.read_bytes() for p in (det, cls, pipeline)}
    for model, target in ((cls, cls), (pipeline, pipeline), (pipeline, det), (pipeline, cls),
                          (cls, tmp_path / "another_name.onnx"), (det, tmp_path / "link.onnx")):
        proc = edgevision("run", "--model", str(model), "--source", str(synthetic_video(3)), "--no-display",
                          flag, str(target), "--overwrite")
        assert_one_line_error(proc, f"{flag} {target} is the model", "even with --overwrite")
    assert {p: p.read_bytes() for p in before} == before

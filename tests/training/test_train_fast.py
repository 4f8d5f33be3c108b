"""The head stage on a frozen pretrained backbone (fast mode, and the first stage of fine-tuning with
weights), for the two trainers that compute the backbone's features once and fit the head on them:
the head trains, and features too large to hold in memory go to a file in the run folder and give
the same model. A random MobileNetV2 weights file stands in for ImageNet's (no download, no
../shared): it checks the plumbing, not the quality."""

import errno
import gc
import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")
pytestmark = pytest.mark.train

from edgevision.deploy.errors import UserError
from edgevision.training import fit
from edgevision.training.bench_memory import make_folder
from edgevision.training.options import make_config
from edgevision.training.tasks.classify import train as train_classify
from edgevision.training.tasks.keypoints import train as train_keypoints
from taskdata import dot_dataset, random_mobilenet_weights


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    return random_mobilenet_weights(tmp_path_factory.mktemp("weights") / "mobilenet_v2_0.35_random.weights.h5")


def _fast(task: str, data, runs, weights, **extra) -> dict:
    return dict(data=str(data), runs_dir=str(runs), task=task, mode="fast", weights=str(weights), alpha=0.35,
                input_size=32, head_epochs=4, head_lr=3e-3, batch_size=8, seed=0, augment_copies=1, color=0.0,
                grayscale=0.0, **extra)


@pytest.mark.parametrize("task", ["classify", "keypoints"])
def test_features_too_large_for_memory_go_to_a_file_and_give_the_same_model(task, tmp_path, monkeypatch,
                                                                                random_weights):
    if task == "classify":
        data, train = make_folder(tmp_path / "colours", 24), train_classify
        extra, metric = {}, "accuracy"
    else:
        data, train = dot_dataset(tmp_path / "dots", 24), train_keypoints
        extra, metric = dict(points=("dot",), head="heatmap", rotation_deg=0.0, zoom=0.0), "nme_mean"
    results = {}
    for limit in (fit.FEATURES_IN_MEMORY, 0):  # the default (these features are a few kB), then all on disk
        monkeypatch.setattr(fit, "FEATURES_IN_MEMORY", limit)
        lines: list[str] = []
        run_dir = train(make_config(_fast(task, data, tmp_path / f"runs{limit}", random_weights, **extra)),
                        lines.append)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        feature_line = next(line for line in lines if line.startswith("features: "))
        # every training image and its augmented copy, every validation image
        assert feature_line.startswith(f"features: {2 * metrics['train_images']} train, "
                                       f"{metrics['val_images']} val in "), feature_line
        assert ("in a file in the run folder" in feature_line) == (limit == 0), feature_line
        gc.collect()
        assert not open_files_in(run_dir)  # the features file is let go once the head is trained
        assert any(line.startswith("head epoch") for line in lines)
        history = json.loads((run_dir / "history.json").read_text())["head"]
        results[limit] = (metrics[metric], history["loss"], history["val_loss"])
    in_memory, on_disk = results.values()  # the metric and every epoch's training and validation loss
    assert np.isfinite(in_memory[0]) and np.allclose(np.hstack(on_disk), np.hstack(in_memory), rtol=1e-5, atol=1e-7)


def open_files_in(folder) -> list[str]:
    """This process's open files and file maps under ``folder`` (an unnamed temporary file shows
    as 'folder/#inode (deleted)')."""
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    maps = [line.split(maxsplit=5)[-1] for line in Path("/proc/self/maps").read_text().splitlines()
            if len(line.split(maxsplit=5)) == 6]
    return [name for name in links + maps if name.startswith(str(folder))]


def test_feature_array_is_in_memory_below_the_limit_and_file_backed_above(tmp_path, monkeypatch):
    monkeypatch.setattr(fit, "FEATURES_IN_MEMORY", 1000)
    small = fit.feature_array((10, 25), np.float32, tmp_path)  # 1,000 bytes
    large = fit.feature_array((10, 26), np.float32, tmp_path)
    assert not isinstance(small, np.memmap) and isinstance(large, np.memmap)
    large[:] = np.arange(260).reshape(10, 26)
    assert large[3, 5] == 83 and open_files_in(tmp_path)
    assert fit.on_disk(small) == "" and "0 MB of them in a file" in fit.on_disk(large, small)
    del large
    gc.collect()
    assert not open_files_in(tmp_path)  # gone with the array


def test_no_room_for_the_features_file_is_one_line_not_a_crash(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fit, "FEATURES_IN_MEMORY", 1000)
    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(UserError, match=r"no room in .* for the head's features .*No space left on device.*--runs-dir"):
        fit.feature_array((100, 26), np.float32, tmp_path)

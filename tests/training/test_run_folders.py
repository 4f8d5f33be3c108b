"""A failed or stopped training removes its own half-made run folder, and nothing else: folders that
other commands (crops, collect, another training) made in runs/ meanwhile are kept."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("tensorflow")

from edgevision.training import train as train_module
from edgevision.training.runfolder import new_run_dir


class _Config:
    run_name = "tiny"
    task = "classify"
    distribute = "none"

    def __init__(self, runs):
        self.runs_dir = str(runs)


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failed_run_removes_only_the_run_folder_it_made(tmp_path, monkeypatch, failure):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "earlier-run").mkdir()
    config = _Config(runs)

    class _Task:
        @staticmethod
        def train(config, log):
            new_run_dir(config)  # this run's folder, never finished
            (runs / "crops_made_meanwhile").mkdir()  # another command's output, made while this one trained
            (runs / "crops_made_meanwhile" / "a.jpg").write_bytes(b"x")
            raise failure

    monkeypatch.setattr(train_module, "task", lambda kind: _Task)
    args = argparse.Namespace(int8=False, fp16=False, overwrite=False, export=None)
    with pytest.raises(type(failure)):
        train_module.train_from_args(args, config)
    assert sorted(p.name for p in runs.iterdir()) == ["crops_made_meanwhile", "earlier-run"]
    assert (runs / "crops_made_meanwhile" / "a.jpg").exists()

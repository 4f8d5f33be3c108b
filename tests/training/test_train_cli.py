"""training/train.py: the dispatch from options to a task's trainer."""

import argparse

import pytest

tf = pytest.importorskip("tensorflow")

from edgevision.training import train as train_module
from edgevision.training.options import add_train_args
from edgevision.training.runfolder import new_run_dir


def test_a_failed_run_leaves_no_half_made_folder_but_keeps_older_runs(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    (runs / "old-run").mkdir(parents=True)  # someone's earlier run, without a model: never touched

    class Failing:
        @staticmethod
        def train(config, log):
            (new_run_dir(config) / "tb").mkdir()  # the run folder this training made, half-written
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "task", lambda kind: Failing)
    parser = argparse.ArgumentParser()
    add_train_args(parser)
    args = parser.parse_args([str(tmp_path), "--runs-dir", str(runs), "--weights", "none", "--mode", "finetune"])
    with pytest.raises(KeyboardInterrupt):
        train_module.train_from_args(args)
    assert sorted(p.name for p in runs.iterdir()) == ["old-run"]

"""SIGTERM and Ctrl-C during `edgevision train` (a real subprocess, tiny data): the run stops with exit
code 143 (130 for Ctrl-C), removes its unfinished run folder and exports nothing, wherever the signal
lands. Raised where it lands, inside TensorFlow, the signal could be lost (a finalizer that Python runs
there drops the exception) and the training finished and exported with exit code 0."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")
pytestmark = pytest.mark.train

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_train_export import colour_dataset

# The training's own callback sends the signal from inside a finalizer that is collected at once, as
# TensorFlow's finalizers run in the middle of a step: Python prints "Exception ignored" and goes on.
IN_A_FINALIZER = """
import os, signal, sys
from edgevision.training import fit

class SignalInFinalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100_000):  # the handler runs in here
            pass

real = fit.EpochLine.on_epoch_end

def on_epoch_end(self, epoch, logs=None):
    real(self, epoch, logs)
    if self.stage == "finetune" and epoch == 1:
        SignalInFinalizer()

fit.EpochLine.on_epoch_end = on_epoch_end
from edgevision.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return colour_dataset(tmp_path_factory.mktemp("signals") / "data", per_class=8)


@pytest.mark.parametrize(
    "when, signum, code",
    [
        ("train / ", signal.SIGTERM, 143),  # the scan is done: the model is built, the pipeline starts
        ("finetune epoch   1/", signal.SIGTERM, 143),  # within a fit
        ("finetune epoch   2/", signal.SIGINT, 130),  # Ctrl-C within a fit
        ("in a finalizer", signal.SIGTERM, 143),
    ],
)
def test_a_signal_during_training_stops_it_with_its_exit_code_and_leaves_nothing(data, tmp_path, when, signum, code):
    out, runs = tmp_path / "m.onnx", tmp_path / "runs"
    argv = ["train", str(data), "--runs-dir", str(runs), "--backbone", "tiny", "--weights", "none", "--mode",
            "finetune", "--epochs", "30", "--input-size", "32", "--batch-size", "2", "--patience", "0",
            "--export", str(out)]
    program = ["-c", textwrap.dedent(IN_A_FINALIZER)] if when == "in a finalizer" else ["-m", "edgevision"]
    proc = subprocess.Popen([sys.executable, *program, *argv], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    timer = threading.Timer(240, proc.kill)  # bounded: a run that is not stopped is killed, and fails below
    timer.start()
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if when in line:
                proc.send_signal(signum)
                break
        seen.append(proc.stderr.read())
        returncode = proc.wait()
    finally:
        timer.cancel()
    err = "".join(seen)
    assert returncode == code, err[-3000:]
    assert "stopping when this step is done" in err and "Traceback" not in err, err[-3000:]
    assert f"stopped ({'SIGTERM' if code == 143 else 'Ctrl-C'})" in err
    assert "finetune epoch  30/30" not in err  # stopped within the training, not after it
    assert not out.exists() and not out.with_suffix(".md").exists()
    assert not runs.exists() or not list(runs.iterdir())  # the unfinished run folder is removed

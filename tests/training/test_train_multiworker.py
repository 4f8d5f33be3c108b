"""--distribute multiworker on a real two-machine cluster: two processes on 127.0.0.1, each with its
TF_CONFIG, run the same `edgevision train` commands, as the README's two-worker example says, for
every task. Keras 3's fit failed there before its first step (training/distribute.py's
keras_multiworker_fixes). One cluster serves every assert: starting one costs most of the time."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")
pytestmark = pytest.mark.train

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from taskdata import random_mobilenet_weights, task_data
from test_train_export import colour_dataset

TINY = ["--backbone", "tiny", "--weights", "none", "--mode", "finetune", "--patience", "0", "--seed", "0",
        "--color", "0", "--grayscale", "0", "--dropout", "0", "--batch-size", "4"]


def commands(root: Path, weights: Path) -> dict[str, list[str]]:
    """The runs, in order, each one `edgevision train` command line that both workers run."""
    runs = ["--runs-dir", str(root / "runs"), "--distribute", "multiworker"]
    fast = ["--mode", "fast", "--weights", str(weights), "--alpha", "0.35", "--input-size", "32", "--head-epochs", "3",
            "--batch-size", "4", "--augment-copies", "0", "--color", "0", "--grayscale", "0"]
    keypoints = ["--task", "keypoints", "--points", "dot", "--head", "heatmap", "--rotation-deg", "0", "--zoom", "0"]
    return {
        # fast mode: the backbone's features, then the head's fit on them (where the README's example crashed)
        "classify-fast": ["train", str(root / "classify"), *runs, "--name", "classify-fast", *fast],
        "keypoints-fast": ["train", str(root / "keypoints"), *runs, "--name", "keypoints-fast", *fast, *keypoints],
        # finetune: the whole model's fit, streamed images, every task
        "keypoints": ["train", str(root / "keypoints"), *runs, "--name", "keypoints", *TINY, *keypoints,
                      "--input-size", "32", "--epochs", "2", "--lr", "3e-3", "--translate", "0.1"],
        "segment": ["train", str(root / "segment"), *runs, "--name", "segment", *TINY, "--task", "segment",
                    "--input-size", "64", "--epochs", "2", "--lr", "1e-2"],
        "detect": ["train", str(root / "detect"), *runs, "--name", "detect", *TINY, "--task", "detect",
                   "--det-classes", "box", "--input-size", "64", "--epochs", "1", "--lr", "3e-3", "--zoom", "0.2",
                   "--translate", "0.1", "--mosaic", "0"],
        # the README's example: the same command with --export on both machines; the chief exports
        "classify": ["train", str(root / "classify"), *runs, "--name", "classify", *TINY, "--input-size", "32",
                     "--epochs", "5", "--lr", "3e-3", "--export", str(root / "models" / "colours.onnx")],
    }


WORKER = """
import json, sys
from edgevision.cli import main

codes = {}
for name, argv in json.loads(sys.argv[1]).items():
    print(f"=== {name}", file=sys.stderr, flush=True)
    codes[name] = main(argv)
print("CODES=" + json.dumps(codes), flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Both workers' (exit code, per-run exit codes, stderr split by run), and the folder."""
    root = tmp_path_factory.mktemp("multiworker")
    colour_dataset(root / "classify", per_class=14)
    for kind in ("keypoints", "segment", "detect"):
        task_data(kind, root / kind, n=17 if kind == "detect" else 16)  # splits that halve evenly
    weights = random_mobilenet_weights(root / "mobilenet_v2_0.35_random.weights.h5")
    (root / "models").mkdir()
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    runs = json.dumps(commands(root, weights))
    procs, logs = [], []
    for index in (0, 1):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        logs.append((open(root / f"out{index}.txt", "w+"), open(root / f"err{index}.txt", "w+")))
        procs.append(subprocess.Popen([sys.executable, "-c", textwrap.dedent(WORKER), runs], env=env,
                                      stdout=logs[-1][0], stderr=logs[-1][1], text=True))
    try:
        codes = [proc.wait(timeout=400) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
    results = []
    for code, (out, err) in zip(codes, logs):
        out.seek(0)
        err.seek(0)
        text, stderr = out.read(), err.read()
        out.close()
        err.close()
        per_run = json.loads(text.split("CODES=")[1]) if "CODES=" in text else {}
        by_run = dict(part.split("\n", 1) for part in stderr.split("=== ")[1:])
        results.append(dict(code=code, runs=per_run, stderr=stderr, log=by_run))
    return root, results


def test_both_workers_finish_every_task_in_both_modes(cluster):
    root, results = cluster
    for index, worker in enumerate(results):
        assert worker["code"] == 0 and "Traceback" not in worker["stderr"], worker["stderr"][-4000:]
        assert worker["runs"] == dict.fromkeys(commands(root, Path("w")), 0), worker["stderr"][-4000:]
        for name, log in worker["log"].items():
            assert f"multiworker: this is worker {index} of 2 machines, 2 devices in all" in log, (name, log)
            assert "global batch 8 (4 per device)" in log, (name, log)
    chief, other = results[0]["log"], results[1]["log"]
    assert "head epoch   3/3" in chief["classify-fast"] and "head epoch   3/3" in chief["keypoints-fast"]
    for name in ("keypoints", "segment", "detect", "classify"):
        assert "finetune epoch" in chief[name], chief[name]
        assert "this worker's copy of the run is removed: the chief writes the run folder" in other[name]


def test_only_the_chief_writes_a_run_folder_per_task_and_the_export(cluster):
    root, results = cluster
    folders = sorted((root / "runs").iterdir())
    assert [f.name.rsplit("-", 2)[0] for f in folders] == sorted(commands(root, Path("w")))  # one each, the chief's
    for folder in folders:
        for name in ("model.keras", "spec.json", "metrics.json", "config.toml", "val.tsv"):
            assert (folder / name).is_file(), (folder, name)
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["devices"] == 2
        assert 'distribute = "multiworker"' in (folder / "config.toml").read_text()
    classify = next(f for f in folders if f.name.startswith("classify-2"))
    assert json.loads((classify / "metrics.json").read_text())["accuracy"] >= 0.8  # two machines learn the colours
    assert (root / "models" / "colours.onnx").is_file() and (root / "models" / "colours.md").is_file()
    assert "wrote " in results[0]["log"]["classify"] and "wrote " not in results[1]["log"]["classify"]

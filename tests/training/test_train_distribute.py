"""training/distribute.py: --distribute mirrored on two logical CPU devices trains the tiny model as
one device does; a multiworker strategy is built from TF_CONFIG; bad values are one clear line.
Strategies need TensorFlow's devices configured before it starts, so those tests run in a new process."""

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("tensorflow", reason="the 'train' extra is not installed")

from edgevision.deploy.errors import UserError
from edgevision.training.distribute import is_chief, read_tf_config
from edgevision.training.options import make_config

HERE = Path(__file__).resolve().parent
TWO_CPUS = """
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
"""


def run_python(code: str, env_extra: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHONPATH": str(HERE), **(env_extra or {})}  # test_train_export, taskdata
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.train
def test_mirrored_on_two_logical_cpus_trains_the_tiny_model_to_the_accuracy_of_one_device(tmp_path):
    proc = run_python(TWO_CPUS + f"""
import json
from pathlib import Path
from test_train_export import colour_dataset
from edgevision.training.options import make_config
from edgevision.training.tasks.classify import train

root = Path({str(tmp_path)!r})
data = colour_dataset(root / "data")
out = {{}}
# the same global batch of 8: one device with 8, two devices with 4 each
for distribute, batch in (("none", 8), ("mirrored", 4)):
    log = []
    config = make_config(dict(data=str(data), runs_dir=str(root / distribute), mode="finetune", input_size=32,
                              backbone="tiny", weights="none", epochs=10, lr=3e-3, batch_size=batch, seed=3,
                              grayscale=0.0, distribute=distribute))
    run = train(config, log=log.append)
    out[distribute] = dict(metrics=json.loads((run / "metrics.json").read_text()), log=log)
print("RESULT=" + json.dumps(out))
""")
    result = json.loads(proc.stdout.split("RESULT=")[1])
    one, two = result["none"], result["mirrored"]
    assert one["metrics"]["devices"] == 1 and two["metrics"]["devices"] == 2
    assert any(line.startswith("mirrored over 2 devices: CPU:0, CPU:1") for line in two["log"])
    assert "global batch 8 (4 per device); learning rates as given" in two["log"]
    assert one["metrics"]["accuracy"] >= 0.8
    assert two["metrics"]["accuracy"] == one["metrics"]["accuracy"]
    assert two["metrics"]["val_images"] == one["metrics"]["val_images"]


@pytest.mark.train
def test_keypoints_segment_and_detect_cache_their_images_and_train_on_two_devices_as_on_one(tmp_path):
    """Per task: one device writes the --cache; mirrored over two logical CPUs with the same global
    batch (4 per device) reads it, decodes no image (but mosaic's extra photos) and reaches the
    same metric: the same samples, augmentation and loss per epoch. The unreadable image is
    skipped and reported by both."""
    proc = run_python(TWO_CPUS + f"""
import json
from collections import Counter
from pathlib import Path
import numpy as np
from taskdata import task_data, tiny_config
from edgevision.training.options import make_config
from edgevision.training.tasks import task

reads = Counter()
real_fromfile = np.fromfile
def counting_fromfile(file, *args, **kwargs):
    reads[str(file)] += 1
    return real_fromfile(file, *args, **kwargs)
np.fromfile = counting_fromfile  # deploy.images.read_image decodes every image through it

root = Path({str(tmp_path)!r})
out = {{}}
# sizes that split evenly over two devices: 12 readable training images (16 for detect)
for kind, n in (("keypoints", 16), ("segment", 16), ("detect", 17)):
    data, broken = task_data(kind, root / kind / "data", n=n)
    for name, distribute, batch in (("write", "none", 8), ("read", "mirrored", 4)):
        log = []
        reads.clear()
        values = tiny_config(kind, data, root / kind / name, batch_size=batch, distribute=distribute,
                             cache=str(root / kind / "cache"))
        run = task(kind).train(make_config(values), log=log.append)
        out[kind + "/" + name] = dict(metrics=json.loads((run / "metrics.json").read_text()), log=log,
                                      reads=dict(reads), broken=str(broken))
print("RESULT=" + json.dumps(out))
""")
    result = json.loads(proc.stdout.split("RESULT=")[1])
    for kind, name in (("keypoints", "pixel_error_mean"), ("segment", "miou"), ("detect", "map50")):
        write, read = result[f"{kind}/write"], result[f"{kind}/read"]
        for run in (write, read):
            assert run["metrics"]["skipped_images"] == [write["broken"]]
            assert any("1 unreadable images skipped" in line for line in run["log"])
        assert sum("writing an image cache to" in line for line in write["log"]) == 2  # train and val
        assert sum("reading the image cache" in line for line in read["log"]) == 2
        assert len(list((tmp_path / kind / "cache").glob(f"{kind}-*.index"))) == 2
        if kind == "detect":  # mosaic's three extra photos come from their files
            write["reads"] = {path: n for path, n in write["reads"].items() if "/val/" in path}
            read["reads"] = {path: n for path, n in read["reads"].items() if "/val/" in path}
        if kind == "segment":  # the val masks are read again at source size, to score and to keep them (by design)
            val = write["metrics"]["val_images"]
            masks = {run: {p: n for p, n in r["reads"].items() if "/masks/" in p} for run, r in (("w", write),
                                                                                                 ("r", read))}
            assert sorted(masks["w"].values()).count(3) == val and set(masks["w"].values()) == {1, 3}  # scan + 2
            assert list(masks["r"].values()) == [2] * val  # no scan: the cache; then the same two
            write["reads"] = {path: n for path, n in write["reads"].items() if "/masks/" not in path}
            read["reads"] = {path: n for path, n in read["reads"].items() if "/masks/" not in path}
        assert write["reads"] and all(n == 1 for n in write["reads"].values())  # the scan; then the cache
        assert read["reads"] == {}
        assert write["metrics"]["devices"] == 1 and read["metrics"]["devices"] == 2
        assert any(line.startswith("mirrored over 2 devices: CPU:0, CPU:1") for line in read["log"])
        assert "global batch 8 (4 per device); learning rates as given" in read["log"]
        assert read["metrics"][name] == pytest.approx(write["metrics"][name], rel=1e-4), (kind, name)
    assert result["segment/read"]["metrics"]["miou"] > 0.6  # learned in these few steps: all background scores 0.45


@pytest.mark.train
def test_a_multiworker_strategy_is_built_from_tf_config_and_its_chief_writes_the_run(tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    tf_config = {"cluster": {"worker": [f"localhost:{port}"]}, "task": {"type": "worker", "index": 0}}
    proc = run_python(f"""
import json
from pathlib import Path
from test_train_export import colour_dataset
from edgevision.training.options import make_config
from edgevision.training.tasks.classify import train

root = Path({str(tmp_path)!r})
data = colour_dataset(root / "data", per_class=6)
log = []
config = make_config(dict(data=str(data), runs_dir=str(root / "runs"), mode="finetune", input_size=32,
                          backbone="tiny", weights="none", epochs=2, batch_size=4, distribute="multiworker"))
run = train(config, log=log.append)
print("RESULT=" + json.dumps(dict(run=str(run), log=log)))
""", {"TF_CONFIG": json.dumps(tf_config)})
    result = json.loads(proc.stdout.split("RESULT=")[1])
    assert "multiworker: this is worker 0 of 1 machines, 1 devices in all" in result["log"]
    run = Path(result["run"])
    assert run.parent == tmp_path / "runs" and (run / "model.keras").is_file()
    assert 'distribute = "multiworker"' in (run / "config.toml").read_text()


def test_only_the_chief_writes_the_run_folder():
    two = {"cluster": {"worker": ["a:1", "b:1"]}}
    with_chief = {"cluster": {"chief": ["c:1"], "worker": ["a:1"]}}

    def env(config, kind, index):
        return {"TF_CONFIG": json.dumps({**config, "task": {"type": kind, "index": index}})}

    assert is_chief("multiworker", env(two, "worker", 0)) and not is_chief("multiworker", env(two, "worker", 1))
    assert is_chief("multiworker", env(with_chief, "chief", 0))
    assert not is_chief("multiworker", env(with_chief, "worker", 0))
    assert is_chief("none", {}) and is_chief("mirrored", {})


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "TF_CONFIG, which is not set"),
        ("{cluster: 1", "TF_CONFIG is not JSON"),
        ('{"task": {"type": "worker", "index": 0}}', "needs a 'cluster' object with a 'worker' list"),
        ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "must be a list of 'host:port'"),
        ('{"cluster": {"worker": ["host1"]}, "task": {"type": "worker", "index": 0}}', "list of 'host:port'"),
        ('{"cluster": {"worker": ["h:1"], "ps": ["p:2"]}, "task": {"type": "worker", "index": 0}}',
         "knows only 'worker'"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "evaluator", "index": 0}}', "task.type must be"),
        ('{"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 2}}', "task.index must be 0..1"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker"}}', "task.index must be 0..0"),
    ],
)
def test_a_bad_tf_config_is_named_in_one_line(text, message):
    with pytest.raises(UserError, match=message) as info:
        read_tf_config(text)
    assert "\n" not in str(info.value)


def test_distribute_and_cache_values_are_checked_when_the_options_are_built(tmp_path):
    with pytest.raises(UserError, match="distribute must be one of none, mirrored, multiworker, got 'two'"):
        make_config(dict(data=str(tmp_path), distribute="two"))
    for task, extra in (("keypoints", {"points": ("nose",)}), ("segment", {}), ("detect", {"det_classes": ("box",)})):
        config = make_config(dict(data=str(tmp_path), task=task, distribute="mirrored", cache=str(tmp_path / "c"),
                                  **extra))
        assert (config.distribute, config.cache) == ("mirrored", str(tmp_path / "c"))  # every task streams
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cache must be a folder"):
        make_config(dict(data=str(tmp_path), cache=str(tmp_path / "file")))
    with pytest.raises(UserError, match="distribute must be a str"):
        make_config(dict(data=str(tmp_path), distribute=2))


@pytest.mark.parametrize(
    "flags, env, message",
    [
        (["--distribute", "three"], {}, "argument --distribute: invalid choice: 'three'"),
        (["--distribute", "multiworker"], {"TF_CONFIG": "{not json"}, "edgevision: error: TF_CONFIG is not JSON"),
    ],
)
def test_the_cli_refuses_a_bad_distribute_value_or_tf_config_in_one_line(tmp_path, flags, env, message):
    import os

    sys.path.insert(0, str(HERE))
    from test_train_export import colour_dataset

    data = colour_dataset(tmp_path / "data", per_class=3)
    proc = subprocess.run([sys.executable, "-m", "edgevision", "train", str(data), "--runs-dir", str(tmp_path / "runs"),
                           "--mode", "finetune", "--weights", "none", "--backbone", "tiny", *flags],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (tmp_path / "runs").exists()

"""Training on several devices or machines with TensorFlow's own tf.distribute strategies.

none         one device (TensorFlow's default strategy).
mirrored     every local GPU (or, without a GPU, every logical CPU device), one model copy per
             device, gradients summed each step: ``batch_size`` is per device, the global batch
             is ``batch_size`` x devices. Learning rates are used as given.
multiworker  MultiWorkerMirroredStrategy over the machines that the standard ``TF_CONFIG``
             environment variable names; every worker runs the same command. Only the chief
             (worker 0, or the 'chief' task) writes the run folder; the others write to a
             temporary folder that is removed at the end.

The TF_CONFIG checks here need no TensorFlow; the strategy itself is built on demand.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..deploy.errors import UserError

STRATEGIES = ("none", "mirrored", "multiworker")
TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')


def read_tf_config(text: str | None) -> dict:
    """TF_CONFIG checked: a JSON object with cluster.worker (a list of 'host:port') and a task
    (type 'worker' or 'chief', and an index within its list). Errors are one line."""
    if not text:
        raise UserError(f"--distribute multiworker reads the cluster from TF_CONFIG, which is not set: "
                        f"set it on every machine, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}'")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"TF_CONFIG is not JSON ({exc.msg} at character {exc.pos}): "
                        f"it looks like '{TF_CONFIG_EXAMPLE}'") from exc
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(cluster.get("worker", []), list):
        raise UserError(f"TF_CONFIG needs a 'cluster' object with a 'worker' list, e.g. '{TF_CONFIG_EXAMPLE}'")
    jobs = {k: v for k, v in cluster.items() if k in ("worker", "chief")}
    if set(cluster) - set(jobs):
        raise UserError(f"TF_CONFIG cluster has {', '.join(sorted(set(cluster) - set(jobs)))}: "
                        "multiworker training knows only 'worker' (and an optional 'chief')")
    for job, hosts in jobs.items():
        if not isinstance(hosts, list) or not hosts or not all(_is_address(h) for h in hosts):
            raise UserError(f"TF_CONFIG cluster.{job} must be a list of 'host:port' strings, got {hosts!r}")
    if len(jobs.get("chief", [])) > 1:
        raise UserError(f"TF_CONFIG cluster.chief has {len(jobs['chief'])} addresses: there is one chief")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in jobs:
        raise UserError(f"TF_CONFIG task.type must be one of {', '.join(sorted(jobs))} (the cluster's jobs), "
                        f"got {task.get('type') if isinstance(task, dict) else task!r}")
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(jobs[task["type"]]):
        raise UserError(f"TF_CONFIG task.index must be 0..{len(jobs[task['type']]) - 1} (cluster.{task['type']} "
                        f"has {len(jobs[task['type']])}), got {index!r}")
    return config


def _is_address(text: object) -> bool:
    if not isinstance(text, str) or ":" not in text:
        return False
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def is_chief(kind: str, environ: dict | None = None) -> bool:
    """Whether this process writes the run folder: always, except on a multiworker cluster's
    workers other than the chief."""
    if kind != "multiworker":
        return True
    config = read_tf_config((os.environ if environ is None else environ).get("TF_CONFIG"))
    task, cluster = config["task"], config["cluster"]
    return task["type"] == "chief" or ("chief" not in cluster and task["index"] == 0)


def make_strategy(kind: str, log: Callable[[str], None]):
    """The tf.distribute strategy for ``kind``. Call it before any other TensorFlow work: a
    multiworker strategy must configure TensorFlow's runtime before it starts."""
    import tensorflow as tf

    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = _mirrored(tuple(d.name for d in devices))
        log(f"mirrored over {len(devices)} device{'s' if len(devices) > 1 else ''}: "
            + ", ".join(d.name.split("device:")[-1] for d in devices)
            + ("" if tf.config.list_logical_devices("GPU") else " (no GPU found)"))
        return strategy
    if kind == "multiworker":
        text = os.environ.get("TF_CONFIG")
        config = read_tf_config(text)
        try:
            strategy = _multiworker(text)
        except (RuntimeError, ValueError) as exc:
            raise UserError(f"could not start the multiworker strategy: {str(exc).splitlines()[0]}") from exc
        task = config["task"]
        workers = sum(len(v) for v in config["cluster"].values())
        log(f"multiworker: this is {task['type']} {task['index']} of {workers} machines, "
            f"{strategy.num_replicas_in_sync} devices in all")
        return strategy
    raise UserError(f"distribute must be one of {', '.join(STRATEGIES)}, got {kind!r}")


@functools.cache
def _mirrored(devices: tuple[str, ...]):
    """One MirroredStrategy per device set and process: a second one's collective ops can collide
    with the first's (a shape mismatch in a collective instance) when one process trains twice."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(list(devices))


@functools.cache
def _multiworker(tf_config: str):
    """One MultiWorkerMirroredStrategy per cluster and process: it starts this process's server and
    joins the cluster once (a process that trains twice, as the tests do, reuses it)."""
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


@contextlib.contextmanager
def keras_multiworker_fixes() -> Iterator[None]:
    """Keras 3's ``fit`` fails under MultiWorkerMirroredStrategy on more than one machine
    (keras-team/keras#20585, still so in Keras 3.15): before the first step it reduces the first
    batch's (x, y) pair with ``strategy.reduce``, which takes one tensor, not a pair ("Attempt to
    convert a value (PerReplica...)"), and after each step it averages the scalar losses and metrics
    over axis 0 ("Invalid reduction dimension 0 for input with 0 dimensions"). Within this block
    both are done per tensor: the shapes that build the model come from this worker's share of the
    first batch, and scalars are averaged over the replicas (axis None). Where this Keras has other
    internals the block changes nothing."""
    import tensorflow as tf

    try:
        from keras.src.backend.tensorflow import trainer
    except ImportError:
        yield
        return
    reduce, build = getattr(trainer, "reduce_per_replica", None), getattr(trainer.TensorFlowTrainer,
                                                                          "_maybe_symbolic_build", None)
    multi = getattr(trainer, "_collective_all_reduce_multi_worker", None)
    if reduce is None or build is None or multi is None:
        yield
        return

    def first_local(strategy, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def per_tensor_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None or iterator is None:
            return build(self, iterator, data_batch)
        strategy = self.distribute_strategy
        for _, _, batches in iterator:  # the first batch: this worker's share gives the shapes
            data_batch = tf.nest.map_structure(lambda v: first_local(strategy, v), next(batches))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def per_tensor_reduce(values, strategy, reduction="auto"):
        if reduction not in ("auto", "mean") or not multi(strategy):
            return reduce(values, strategy, reduction)

        def mean(value):
            axis = 0 if first_local(strategy, value).shape.rank else None
            return strategy.reduce("MEAN", value, axis=axis)

        return tf.nest.map_structure(mean, values)

    trainer.reduce_per_replica, trainer.TensorFlowTrainer._maybe_symbolic_build = per_tensor_reduce, per_tensor_build
    try:
        yield
    finally:
        trainer.reduce_per_replica, trainer.TensorFlowTrainer._maybe_symbolic_build = reduce, build


def shard_by_data(ds):
    """A dataset that a multiworker strategy splits by element (every worker reads the same file
    list in the same seeded order and keeps its share); a no-op on one machine."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def train_on_strategy(config, log: Callable[[str], None], body: Callable) -> Path:
    """Make ``config.distribute``'s strategy (first: a multiworker strategy must start before any
    other TensorFlow work), then ``body(config, log, strategy, scratch)`` -> run folder. On a
    multiworker cluster only the chief keeps its run folder (``scratch`` None); the other workers
    train in a temporary one (``scratch``) that is removed at the end."""
    strategy = make_strategy(config.distribute, log)
    fixes = keras_multiworker_fixes() if config.distribute == "multiworker" else contextlib.nullcontext()
    if is_chief(config.distribute):
        with fixes:
            return body(config, log, strategy, None)
    with tempfile.TemporaryDirectory(prefix="edgevision-worker-") as scratch, fixes:
        run_dir = body(config, log, strategy, Path(scratch))
    log("this worker's copy of the run is removed: the chief writes the run folder")
    return run_dir


def global_batch(batch_size: int, strategy, log: Callable[[str], None]) -> int:
    """``batch_size`` per device times the strategy's devices (said in a line when more than one)."""
    replicas = strategy.num_replicas_in_sync
    if replicas > 1:
        log(f"global batch {batch_size * replicas} ({batch_size} per device); learning rates as given")
    return batch_size * replicas

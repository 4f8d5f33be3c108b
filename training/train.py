"""``edgevision train``: options -> the task's trainer (training/tasks/) -> a run folder, and with
``--export`` the ONNX file and its card. Progress goes to stderr."""

from __future__ import annotations

import shutil
from pathlib import Path

import tensorflow as tf

from ..deploy.errors import UserError, interrupts_deferred
from .distribute import is_chief
from .fit import log_line
from .options import config_from_args
from .runfolder import MADE_HERE, check_export_target
from .tasks import task


def train_from_args(args, config=None) -> Path:
    if (args.int8 or args.fp16 or args.overwrite or getattr(args, "force", False)) and args.export is None:
        raise UserError("--int8, --fp16, --overwrite and --force go with --export OUT.onnx: add it, or drop them")
    config = config or config_from_args(args, notice=log_line)
    log = check_export_target(args.export, args.overwrite)  # fail before training, not after
    made_before = len(MADE_HERE)
    # Ctrl-C or SIGTERM raised where it lands can be lost inside TensorFlow (the run then finishes and
    # exits 0): it is noted, and raised at the next batch's end (StopOnSignal) or scan or prediction step
    with interrupts_deferred(log_line, "this step"):
        try:
            run_dir = task(config.task).train(config, log)
        except tf.errors.ResourceExhaustedError as exc:
            _drop_unfinished(MADE_HERE[made_before:])
            raise UserError(
                f"out of memory while training: lower --batch-size or --input-size ({exc.message[:80]})"
            ) from exc
        except BaseException:
            _drop_unfinished(MADE_HERE[made_before:])
            raise
    if args.export is not None and is_chief(config.distribute):  # a multiworker cluster's chief exports
        from .export import export

        variants = tuple(v for v in ("int8", "fp16") if getattr(args, v))
        export(run_dir, args.export, overwrite=args.overwrite, variants=variants, force=getattr(args, "force", False))
    return run_dir


def _drop_unfinished(made: list[Path]) -> None:
    """A run that failed or was stopped leaves no half-made folder behind: only the run folders this
    process made and that hold no model are removed, never a folder another command (crops, collect,
    a second training) made beside them meanwhile."""
    for folder in made:
        if folder.is_dir() and not (folder / "model.keras").exists():
            shutil.rmtree(folder, ignore_errors=True)
            log_line(f"removed the unfinished run folder {folder}")

"""A training run folder, written by the trainers and read by export through this one module:
spec.json, config.toml, metrics.json, history.json, val.tsv (the validation images and what is
known of each). The Keras model (model.keras) is loaded by export.load_run_model."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..deploy.errors import UserError
from ..deploy.spec import SpecError, TaskSpec


def read_spec(run_dir: Path) -> TaskSpec:
    path = Path(run_dir) / "spec.json"
    if not path.is_file():
        raise UserError(f"{run_dir} has no spec.json: it is not a complete training run")
    try:
        return TaskSpec.from_json(path.read_text())
    except SpecError as exc:
        raise UserError(f"{path}: {exc}") from exc


def write_run_files(run_dir: Path, spec: TaskSpec, config_toml: str, metrics: dict, history: dict,
                    val_rows: list[tuple[Path, list[str]]]) -> None:
    """Everything but the model: spec, config, metrics, history and the validation list. ``metrics``
    gains ``failed_classes`` (see :func:`failed_classes`) where the task has classes."""
    if spec.kind in CLASS_CHECKS:
        metrics["failed_classes"] = failed_classes(spec.kind, metrics)
    (run_dir / "spec.json").write_text(spec.to_json() + "\n")
    (run_dir / "config.toml").write_text(config_toml)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (run_dir / "history.json").write_text(json.dumps(history, default=float) + "\n")
    write_val_list(run_dir, val_rows)


def write_val_list(run_dir: Path, rows: list[tuple[Path, list[str]]]) -> None:
    """val.tsv: one image per line, then what is known of it (a label; points and a norm; a mask; boxes)."""
    (run_dir / "val.tsv").write_text("".join("\t".join([str(p), *parts]) + "\n" for p, parts in rows))


def read_val_list(run_dir: Path) -> list[tuple[Path, list[str]]]:
    """The run's validation images and what is known of each, as written by :func:`write_val_list`."""
    path = Path(run_dir) / "val.tsv"
    if not path.is_file():
        raise UserError(f"{run_dir} has no val.tsv: the parity check needs the run's validation images")
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return [(Path(parts[0]), parts[1:]) for parts in rows]


def load_run_files(run_dir: Path) -> tuple[dict, dict]:
    """metrics.json and config.toml of a run, as dicts (the config flat, with the old key names)."""
    from .options import flat_config, tomllib_module

    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    with open(Path(run_dir) / "config.toml", "rb") as f:
        config = tomllib_module().load(f)
    return metrics, flat_config(config)


CLASS_CHECKS = ("classify", "segment", "detect")  # the kinds whose validation metrics are per class


def failed_classes(kind: str, metrics: dict) -> dict[str, str]:
    """The classes that a run's model never gets right on its validation set, each with what was
    measured: segment IoU 0 (never predicted, or never where the class is), classify recall 0 (never
    predicted, or never on the right images), detect AP50 0. Only classes that val holds are judged.
    Read from the metrics alone, so that runs trained before this check are checked at export too."""
    out: dict[str, str] = {}
    if kind == "segment":
        true, predicted = metrics.get("true_pixels", {}), metrics.get("predicted_pixels", {})
        for name, iou in metrics.get("iou", {}).items():
            if iou != 0 or true.get(name, 1) == 0:  # nan: neither on val nor predicted
                continue
            if name in predicted and not predicted[name]:
                out[name] = f"never predicted (0 pixels of {true[name]:,} in the val masks)"
            else:
                count = f"predicted on {predicted[name]:,} pixels, " if name in predicted else ""
                out[name] = f"IoU 0 ({count}none of them right)"
    elif kind == "classify":
        classes = metrics.get("classes", [])
        cm = metrics.get("confusion_matrix", [])
        for i, (name, m) in enumerate(metrics.get("per_class", {}).items()):
            if not m["support"] or m["recall"] > 0:
                continue
            predicted = sum(row[i] for row in cm) if len(cm) == len(classes) else None
            out[name] = (f"never predicted on the {m['support']} val images of it" if predicted == 0 else
                         f"recall 0 (none of its {m['support']} val images right"
                         + (f", predicted for {predicted} others)" if predicted else ")"))
    elif kind == "detect":
        for name, m in metrics.get("per_class", {}).items():
            if m.get("true_boxes") and m.get("ap50") == 0:
                out[name] = f"AP50 0 (none of its {m['true_boxes']} val boxes found)"
    return out


def failed_classes_text(failed: dict[str, str]) -> str:
    """'person (never predicted ...); cat (...)' for a warning or an error line."""
    return "; ".join(f"{name}: {why}" for name, why in failed.items())


def warn_failed_classes(metrics: dict, log) -> None:
    """After training: one loud line when the model never gets a class right on val."""
    failed = metrics.get("failed_classes")
    if failed:
        log(f"WARNING: the model never gets {', '.join(failed)} right on the validation images "
            f"({failed_classes_text(failed)}): export refuses this run unless given --force. Train longer, at a "
            "smaller --batch-size, or on more images of it")


def check_failed_classes(kind: str, metrics: dict, force: bool, run_dir: Path, out: Path, log) -> dict[str, str]:
    """Before export: refuse a run whose model never gets a class right on val (one line), unless
    ``force``; then say so and return those classes for the card."""
    failed = failed_classes(kind, metrics) if kind in CLASS_CHECKS else {}
    if failed and not force:
        raise UserError(f"export refused, {out} not written: the model of {run_dir} never gets "
                        f"{', '.join(failed)} right on its validation images ({failed_classes_text(failed)}); "
                        "train it again, or add --force to export it anyway")
    if failed:
        log(f"WARNING: exporting with --force a model that never gets {', '.join(failed)} right on its "
            "validation images; its card says so")
    return failed


def shown_path(path: str) -> str:
    """A data folder as a card shows it: relative to where the command runs when it is absolute."""
    import os

    return os.path.relpath(path) if os.path.isabs(path) else path


def export_hint(run_name: str) -> str:
    """A models/ file name for the export hint that no shipped or earlier model has."""
    base, n = Path("models") / f"my_{run_name}.onnx", 1
    while base.exists():
        n += 1
        base = Path("models") / f"my_{run_name}_{n}.onnx"
    return str(base)


def log_line(message: str) -> None:
    """A progress line on stderr, at once (also through a pipe)."""
    print(message, file=sys.stderr, flush=True)


MADE_HERE: list[Path] = []  # the run folders this process made: the only ones a failed run may remove


def new_run_dir(config) -> Path:
    """runs/<name>-<date>-<time>, never an existing folder (recorded in ``MADE_HERE``)."""
    base = Path(config.runs_dir) / f"{config.run_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    MADE_HERE.append(path)
    return path


def check_export_target(export: Path | None, overwrite: bool):
    """Before training: ``--export`` must be a new file (or --overwrite) in a folder that takes files, so
    that a long training never ends in 'cannot write'. Returns the trainer's logger: with --export the
    'export it:' hint (the export follows at once) is left out."""
    if export is None:
        return log_line
    from ..deploy.images import check_new_output, check_takes_files

    path = check_new_output(export, overwrite)
    check_takes_files(path.parent, f"cannot write {path} (checked before training)")
    return lambda message: None if message.startswith("export it:") else log_line(message)

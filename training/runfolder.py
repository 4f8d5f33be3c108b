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
    """Everything but the model: spec, config, metrics, history and the validation list."""
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

"""Training options: small frozen dataclasses, one per TOML table, filled from a config file
and/or flags. No TensorFlow here.

A config file has the general options at the top and a table per concern::

    data = "../../../shared/data/hands_webcam"     # paths are relative to this file
    task = "detect"
    mode = "finetune"
    [augment]
    zoom = 0.7
    [detect]
    classes = ["hand"]
    rename = ["*-hand:hand"]

Each field's ``help`` metadata is its ``--help`` text; its ``flag`` metadata the flag's name where
it differs from the field's (``--det-classes`` for ``[detect] classes``). Files written before
the tables existed (flat keys such as ``hflip`` or ``det_classes``) are still read; a notice says
where each key now belongs.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..deploy.errors import UserError
from ..deploy.spec import TASK_KINDS
from .distribute import STRATEGIES
from .sections import (  # noqa: F401  (the tables, re-exported for readers of options)
    CLASSIFY_HEADS,
    HEADS,
    NUMPY_HEADS,
    SECTIONS,
    SEG_HEADS,
    Augment,
    ClassifyOptions,
    DetectOptions,
    KeypointOptions,
    SegmentOptions,
    _in_range,
    opt,
)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MODES = ("fast", "finetune")
BACKBONES = ("mobilenet_v2", "tiny")
PATH_KEYS = ("data", "extra_data", "runs_dir", "weights", "cache")  # resolved against the config file's folder
# Where a task's recipe differs from the general defaults (a flag or a config key still wins). A segmenter
# runs the backbone on every photo every epoch: at batch 32, 30 epochs and lr 1e-4, a small set (40 photos)
# gets a few dozen steps and the model learns "all background" (person IoU 0.0000, measured on person_seg);
# training/configs/person_seg.toml's schedule is the one measured to work there.
TASK_DEFAULTS = {"segment": {"batch_size": 8, "head_epochs": 20, "epochs": 40, "lr": 3e-4, "unfreeze": 50,
                             "patience": 0}}


@dataclass(frozen=True)
class TrainConfig:
    data: str = opt("", "DATA/<label>/*.jpg, or DATA/train/<label> and DATA/val/<label>")
    extra_data: tuple[str, ...] = opt((), "more data folders with the same classes or boxes, merged (validation "
                                          "reported per folder); comma-separated")
    name: str = opt("", "run name (default: the data folder's name)")
    runs_dir: str = opt("runs", "where run folders are made")
    task: str = opt("classify", "what the model does", choices=TASK_KINDS)
    mode: str = opt("fast", "fast: a head on frozen features (seconds); finetune: also the backbone's top (minutes)",
                    choices=MODES)
    input_size: int = opt(160, "model input side in pixels (a multiple of 8, 32..512)")
    backbone: str = opt("mobilenet_v2", "mobilenet_v2, or tiny: a small CNN from scratch (tests)", choices=BACKBONES)
    alpha: float = opt(1.0, "MobileNetV2 width")
    weights: str = opt("imagenet", "imagenet (Keras download), none, or a local .h5 file (offline)")
    val_split: float = opt(0.2, "validation share when DATA has no train/ and val/ folders")
    seed: int = opt(0, "seed of the split, the augmentation and the weights")
    batch_size: int = opt(32, "images per training step (per device with --distribute)")
    distribute: str = opt("none", "none (one device), mirrored (all local GPUs, batch_size per GPU) or multiworker "
                                  "(the machines in TF_CONFIG)", choices=STRATEGIES)
    cache: str = opt("", "a folder for an on-disk cache of decoded images (reused while files, labels and size hold)")
    head_epochs: int = opt(200, "epochs of the head on cached features (fast mode, finetune's first stage)")
    head_lr: float = opt(1e-3, "learning rate of the head stage")
    epochs: int = opt(30, "finetune: epochs of backbone training")
    lr: float = opt(1e-4, "finetune: peak learning rate (warm-up, then cosine decay)")
    unfreeze: int = opt(40, "finetune: trainable backbone layers, counted from the top")
    patience: int = opt(8, "early stopping on validation loss; 0 runs every epoch and keeps the last weights")
    dropout: float = opt(0.2, "dropout before the head")
    label_smoothing: float = opt(0.1, "classification: label smoothing")
    weight_decay: float = opt(1e-4, "AdamW weight decay")
    class_weight: str = opt("balanced", "balanced (each class the same total weight) or none",
                            choices=("balanced", "none"))
    notes: str = opt("", "free text for the model card (data caveats)")
    peer: str = opt("", "the model card's comparison with a peer model on the same validation photos (Markdown)")
    config_file: str = opt("", "the TOML file these came from, if any")
    augment: Augment = field(default_factory=Augment)
    classify: ClassifyOptions = field(default_factory=ClassifyOptions)
    keypoints: KeypointOptions = field(default_factory=KeypointOptions)
    segment: SegmentOptions = field(default_factory=SegmentOptions)
    detect: DetectOptions = field(default_factory=DetectOptions)

    def __post_init__(self) -> None:
        if not self.data:
            raise UserError("no data folder: give DATA or a --config that names one")
        if self.name and (not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", self.name) or ".." in self.name):
            raise UserError(f"name must be a plain folder name (letters, digits, _ . -), got {self.name!r}: the run "
                            "folder stays inside runs_dir")
        for key, cls in SECTIONS.items():
            if isinstance(getattr(self, key), dict):  # TrainConfig(augment={...}) reads like the TOML table
                object.__setattr__(self, key, _build(cls, getattr(self, key), key + "."))
        object.__setattr__(self, "extra_data", tuple(self.extra_data))
        for name, choices in (("task", TASK_KINDS), ("mode", MODES), ("backbone", BACKBONES),
                              ("class_weight", ("balanced", "none")), ("distribute", STRATEGIES)):
            if getattr(self, name) not in choices:
                raise UserError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.cache and Path(self.cache).expanduser().is_file():
            raise UserError(f"cache must be a folder, and {self.cache} is a file")
        if self.extra_data and self.task not in ("classify", "detect"):
            raise UserError("extra_data is for classification and detection")
        if self.task == "segment" and len(self.segment.classes) != len(self.segment.yolo_classes) + 1:
            raise UserError("segment.classes names background plus one class per segment.yolo_classes id")
        if self.task == "detect" and not self.detect.classes:
            raise UserError("detect needs at least one class name (--det-classes hand)")
        if self.task == "keypoints" and not self.keypoints.points:
            raise UserError("keypoints need at least one point name (--points nose)")
        if not 32 <= self.input_size <= 512 or self.input_size % 8:
            raise UserError(f"input_size must be a multiple of 8 within 32..512, got {self.input_size}")
        if not 0.0 < self.val_split < 1.0:
            raise UserError(f"val_split must be within 0..1, got {self.val_split}")
        for name in ("batch_size", "head_epochs", "epochs"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be 1 or more, got {getattr(self, name)}")
        for name in ("lr", "head_lr", "alpha"):
            if not getattr(self, name) > 0:
                raise UserError(f"{name} must be above 0, got {getattr(self, name)}")
        if self.patience < 0 or self.unfreeze < 0 or self.weight_decay < 0:
            raise UserError("patience, unfreeze and weight_decay must be 0 or more")
        for name in ("dropout", "label_smoothing"):
            _in_range("", name, getattr(self, name), 0.0, 1.0)
        if self.task == "classify" and self.classify.head in NUMPY_HEADS:
            if self.mode != "fast":
                raise UserError(f"--head {self.classify.head} is fitted in fast mode only: drop --mode finetune, or "
                                "use --head softmax or mlp")
            if self.augment.copies:
                raise UserError(f"--head {self.classify.head} takes no augmented copies: drop --augment-copies")
        if self.backbone == "tiny" and self.weights != "none":
            raise UserError("the tiny backbone has no pretrained weights: use --weights none")
        if self.weights == "none" and self.mode == "fast":
            raise UserError(
                "fast mode needs pretrained weights (random features carry no information): "
                "use --mode finetune to train from scratch, or --weights imagenet or a .h5 path"
            )
        if self.weights not in ("imagenet", "none") and not Path(self.weights).is_file():
            raise UserError(f"weights file not found: {self.weights} (or use 'imagenet' or 'none')")

    @property
    def run_name(self) -> str:
        return self.name or Path(self.data).resolve().name

    def to_toml(self) -> str:
        """The exact config, as TOML that 'edgevision train --config' reads back (paths absolute)."""
        top, tables = [], []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECTIONS:
                body = "\n".join(f"{k} = {_toml_value(v)}" for k, v in asdict(value).items())
                tables.append(f"\n[{f.name}]\n{body}")
                continue
            if f.name in PATH_KEYS and value and not (f.name == "weights" and value in ("imagenet", "none")):
                value = tuple(str(Path(v).resolve()) for v in value) if f.name == "extra_data" else str(
                    Path(value).resolve())
            top.append(f"{f.name} = {_toml_value(value)}")
        return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


# Flat keys of files written before the tables, and the table each now belongs to.
FLAT_KEYS = {
    **{name: ("augment", name) for name in ("hflip", "vflip_swap", "rotation_deg", "zoom", "translate", "color",
                                            "grayscale", "rot90", "mosaic", "lowres")},
    "augment_copies": ("augment", "copies"),
    "points": ("keypoints", "points"), "head": ("keypoints", "head"), "flip_average": ("keypoints", "flip_average"),
    "seg_classes": ("segment", "classes"), "seg_head": ("segment", "head"), "yolo_classes": ("segment", "yolo_classes"),
    "classify_head": ("classify", "head"),
    "det_classes": ("detect", "classes"), "det_rename": ("detect", "rename"), "det_stride": ("detect", "stride"),
    "score_threshold": ("detect", "score_threshold"),
}


def _type_check(where: str, f, value: Any) -> Any:
    """A TOML value checked against a field's type: a string is never a bool, 2.5 is never an int."""
    t = f.type
    ok = {"bool": lambda v: isinstance(v, bool),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "str": lambda v: isinstance(v, str)}
    if t in ok:
        if not ok[t](value):
            raise UserError(f"{where}{f.name} must be a {t}, got {value!r}")
        return float(value) if t == "float" else value
    if t.startswith("tuple"):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise UserError(f"{where}{f.name} must be a list, got {value!r}")
        inner = "int" if "int" in t else "str"
        if not all(ok[inner](v) for v in items):
            raise UserError(f"{where}{f.name} must be a list of {inner}s, got {value!r}")
        return tuple(v.strip() if isinstance(v, str) else v for v in items)
    return value


def _build(cls, values: dict, where: str = ""):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(where + u for u in unknown)} "
                        f"(known in {where.rstrip('.') or 'the top level'}: {', '.join(sorted(known))})")
    return cls(**{k: v if k in SECTIONS else _type_check(where, known[k], v) for k, v in values.items()})


def make_config(values: dict, notice=None) -> TrainConfig:
    """A TrainConfig from TOML-shaped values: top-level keys plus a dict per table. Flat keys of old
    files are moved into their tables (``notice`` is told which)."""
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    moved = []
    for key in [k for k in values if k in FLAT_KEYS]:
        section, name = FLAT_KEYS[key]
        table = values.setdefault(section, {})
        if not isinstance(table, dict):
            raise UserError(f"[{section}] must be a table")
        table.setdefault(name, values.pop(key))
        moved.append(f"{key} -> [{section}] {name}")
    if moved and notice:
        notice("config: flat keys read into their tables (" + "; ".join(moved) + ")")
    task = values.get("task", "classify")
    for key, value in (TASK_DEFAULTS.get(task, {}) if isinstance(task, str) else {}).items():
        values.setdefault(key, value)
    for key, cls in SECTIONS.items():
        if key in values:
            if not isinstance(values[key], dict):
                raise UserError(f"[{key}] must be a table, got {values[key]!r}")
            values[key] = _build(cls, values[key], key + ".")
    return _build(TrainConfig, values)


def load_toml(path: Path) -> dict:
    """Read a config file as a dict, with its paths made relative to the file's folder."""
    tomllib = tomllib_module()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as exc:
        raise UserError(f"config file not found: {path}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid TOML: {str(exc).splitlines()[0]}") from exc
    base = Path(path).resolve().parent
    for key in PATH_KEYS:
        value = data.get(key)
        if key == "weights" and value in ("imagenet", "none"):
            continue
        if isinstance(value, str) and value:
            data[key] = str((base / Path(value).expanduser()).resolve())
        elif key == "extra_data" and isinstance(value, list):
            data[key] = [str((base / Path(v).expanduser()).resolve()) if isinstance(v, str) else v for v in value]
    return data


def resolve_config_path(text: str) -> Path:
    """A path, or the name of a shipped config ('thumbs' -> training/configs/thumbs.toml)."""
    path = Path(text)
    if path.is_file() or path.suffix == ".toml":
        return path
    shipped = CONFIG_DIR / f"{text}.toml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
    raise UserError(f"config {text!r} not found: give a .toml path or one of {names}")


def _flag_fields():
    """(dest, flag, field, section) for every option that has a flag."""
    for f in fields(TrainConfig):
        if f.name in SECTIONS:
            for g in fields(SECTIONS[f.name]):
                flag = g.metadata.get("flag") or g.name.replace("_", "-")
                yield ("head" if flag == "head" else f"{f.name}__{g.name}"), flag, g, f.name
        elif f.name not in ("data", "config_file"):
            yield f.name, f.name.replace("_", "-"), f, None


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", help="DATA/<label>/*.jpg, or DATA/train/<label> and DATA/val/<label>")
    shipped = ", ".join(sorted(c.stem for c in CONFIG_DIR.glob("*.toml")))
    p.add_argument("--config", help=f"a TOML file of options (flags override it), or a shipped one: {shipped}")
    p.add_argument("--export", type=Path, metavar="OUT.onnx", help="export the run to this file, with its card")
    p.add_argument("--overwrite", action="store_true", help="with --export: replace an existing file")
    p.add_argument("--int8", action="store_true", help="with --export: also an INT8 (QDQ) variant")
    p.add_argument("--fp16", action="store_true", help="with --export: also an FP16 variant")
    p.add_argument("--force", action="store_true", help="with --export: export even a model that never gets a "
                                                        "class right on val (its card says so)")
    groups: dict[str | None, argparse._ArgumentGroup] = {}
    p.add_argument("--head", default=None, metavar="HEAD",
                   help="classify: softmax (default) or mlp (Keras), knn or linear (numpy on models/backbone.onnx, no "
                        "TensorFlow); keypoints: regression (default) or heatmap")
    for dest, flag, f, section in _flag_fields():
        if dest == "head":
            continue  # shared by [classify] and [keypoints]: added above, routed by the task
        if section not in groups:
            groups[section] = p.add_argument_group(f"[{section}] table" if section else "general options")
        g = groups[section]
        default = f.default if f.default is not MISSING else f.default_factory()
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        by_task = "".join(f"; {kind}: {d[dest]:g}" for kind, d in TASK_DEFAULTS.items() if dest in d)
        text = f.metadata.get("help", "")
        text = f"{text} (default {shown}{by_task})" if shown not in ("", ()) else text
        choices = f.metadata.get("choices") or None
        if f.type == "bool":
            g.add_argument("--" + flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif f.type.startswith("tuple"):
            g.add_argument("--" + flag, dest=dest, default=None, metavar="A,B", help=text)
        else:
            kind = {"int": int, "float": float}.get(f.type, str)
            g.add_argument("--" + flag, dest=dest, type=kind, default=None, choices=choices, help=text,
                           metavar=None if choices else flag.replace("-", "_").upper())


def config_from_args(args: argparse.Namespace, notice=None) -> TrainConfig:
    """Flags override the config file, which overrides the defaults."""
    values: dict = {}
    if args.config:
        path = resolve_config_path(args.config)
        values.update(load_toml(path))
        values.setdefault("config_file", str(path.resolve()))  # a run's config.toml names its own origin
    if args.data:
        values["data"] = args.data
    task = getattr(args, "task", None) or values.get("task") or "classify"
    for dest, _, f, section in _flag_fields():
        value = getattr(args, dest, None)
        if value is None or (dest == "head" and section != task):
            continue
        if f.type.startswith("tuple"):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
            if "int" in f.type:
                try:
                    value = tuple(int(v) for v in value)
                except ValueError as exc:
                    raise UserError(f"--{dest} takes whole numbers, got {value}") from exc
        if section:
            table = values.setdefault(section, {})
            table[f.name] = value
            # a flag beats the same option given flat in an old file
            values.pop(next((k for k, (s, n) in FLAT_KEYS.items() if s == section and n == f.name), ""), None)
        else:
            values[f.name] = value
    if not values.get("data"):
        raise UserError("no data folder: give DATA or a --config that names one")
    return make_config(values, notice)


def flat_config(config: dict) -> dict:
    """A run's config.toml (tables or old flat keys) as one flat dict with the old key names, for
    readers such as the model card."""
    out = {k: v for k, v in config.items() if k not in SECTIONS}
    for key, (section, name) in FLAT_KEYS.items():
        if isinstance(config.get(section), dict) and name in config[section]:
            out[key] = config[section][name]
    return out


def tomllib_module():
    """tomllib (Python 3.11+) or tomli (3.10), imported when a TOML file is read."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10 (JetPack 6)
        import tomli as tomllib
    return tomllib

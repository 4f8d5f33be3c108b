"""Training options: one dataclass, filled from a TOML file and/or flags. No TensorFlow here."""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from ..deploy.boxdata import is_rename_rule
from ..deploy.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6)
    import tomli as tomllib

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MODES = ("fast", "finetune")
TASKS = ("classify", "keypoints", "segment", "detect")
BACKBONES = ("mobilenet_v2", "tiny")
HEADS = ("regression", "heatmap")


@dataclass(frozen=True)
class TrainConfig:
    data: str  # DATA/<label>/*.jpg or DATA/{train,val}/<label>/*.jpg
    extra_data: tuple[str, ...] = ()  # classify: more folders like DATA, same classes, merged (val reported apart)
    name: str = ""  # run name; default: the data folder's name
    runs_dir: str = "runs"
    task: str = "classify"  # or "keypoints", "segment", "detect"
    points: tuple[str, ...] = ("nose",)  # keypoints: the point names, as in labels.csv
    head: str = "regression"  # keypoints: 'regression' or 'heatmap'
    flip_average: bool = False  # keypoints: average with the mirrored image's prediction (2x inference)
    seg_classes: tuple[str, ...] = ("background", "person")  # segment: mask ids 0, 1, ...
    seg_head: str = "unet"  # segment: 'unet' (skips at 16, 8, 4) or 'lraspp' (DeepLab-lite: stride 16 + 4)
    yolo_classes: tuple[int, ...] = (0,)  # segment: YOLO polygon class ids that become mask ids 1, 2, ...
    det_classes: tuple[str, ...] = ("object",)  # detect: class names (YOLO txt class ids index them)
    det_rename: tuple[str, ...] = ()  # detect: 'pattern:class' rules for VOC names, e.g. '*-hand:hand'
    det_stride: int = 16  # detect: the box grid's stride, 16 or 8 (finer: smaller objects, 4x the cells)
    score_threshold: float = 0.4  # detect: the model's default minimum score (run --score-threshold overrides)
    mode: str = "fast"  # fast: fit a head on frozen features; finetune: also train the backbone's top
    input_size: int = 160
    backbone: str = "mobilenet_v2"  # or 'tiny': a small CNN trained from scratch (tests, quick experiments)
    alpha: float = 1.0  # MobileNetV2 width
    weights: str = "imagenet"  # 'imagenet' (Keras download), 'none', or a local .h5 path
    val_split: float = 0.2  # used when DATA has no train/ and val/ folders
    seed: int = 0
    batch_size: int = 32
    head_epochs: int = 200  # fast mode (and the first stage of finetune): epochs over cached features
    head_lr: float = 1e-3
    epochs: int = 30  # finetune: epochs of backbone training
    lr: float = 1e-4  # finetune: peak learning rate (cosine decay)
    unfreeze: int = 40  # finetune: trainable backbone layers counted from the top
    patience: int = 8  # early stopping on validation loss; 0: run every epoch, keep the last weights
    dropout: float = 0.2
    label_smoothing: float = 0.1
    weight_decay: float = 1e-4
    class_weight: str = "balanced"  # 'balanced' or 'none'
    # Augmentation (finetune; fast mode uses it only when augment_copies > 0)
    hflip: bool = True  # left-right flip, when it keeps the label
    vflip_swap: tuple[str, ...] = ()  # 'a:b' pairs: an upside-down 'a' is a 'b' (thumbs up/down)
    rotation_deg: float = 10.0
    mosaic: float = 0.0  # detect: probability of a 2x2 mosaic of four training photos (smaller objects)
    rot90: float = 0.0  # detect: probability of a quarter turn (hands and objects seen sideways)
    zoom: float = 0.2  # random crop/scale range
    translate: float = 0.1
    color: float = 0.2  # brightness/contrast/saturation jitter strength
    grayscale: float = 0.1  # probability of a grey copy
    augment_copies: int = 0  # fast mode: augmented feature copies per training image
    notes: str = ""  # free text for the model card (data caveats)
    config_file: str = ""  # the TOML file these came from, if any

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise UserError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        object.__setattr__(self, "seg_classes", tuple(self.seg_classes))
        object.__setattr__(self, "yolo_classes", tuple(int(c) for c in self.yolo_classes))
        if self.task == "segment" and len(self.seg_classes) != len(self.yolo_classes) + 1:
            raise UserError("seg_classes names background plus one class per yolo_classes id")
        object.__setattr__(self, "extra_data", tuple(self.extra_data))
        if self.extra_data and self.task != "classify":
            raise UserError("extra_data is for classification (task 'classify')")
        object.__setattr__(self, "det_classes", tuple(self.det_classes))
        object.__setattr__(self, "det_rename", tuple(self.det_rename))
        if self.task == "detect" and not self.det_classes:
            raise UserError("detect needs at least one class name (--det-classes hand)")
        for rule in self.det_rename:
            if not is_rename_rule(rule, self.det_classes):
                raise UserError(f"det_rename rules look like '*-hand:hand' with a class of det_classes, got {rule!r}")
        if self.head not in HEADS:
            raise UserError(f"head must be 'regression' or 'heatmap', got {self.head!r}")
        object.__setattr__(self, "points", tuple(self.points))
        if self.task == "keypoints" and not self.points:
            raise UserError("keypoints need at least one point name (--points nose)")
        if self.mode not in MODES:
            raise UserError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 32 <= self.input_size <= 512 or self.input_size % 8:
            raise UserError(f"input_size must be a multiple of 8 within 32..512, got {self.input_size}")
        if not 0.0 < self.val_split < 1.0:
            raise UserError(f"val_split must be within 0..1, got {self.val_split}")
        if self.class_weight not in ("balanced", "none"):
            raise UserError(f"class_weight must be 'balanced' or 'none', got {self.class_weight!r}")
        if self.patience < 0:
            raise UserError(f"patience must be 0 (no early stopping) or more, got {self.patience}")
        for name in ("batch_size", "head_epochs", "epochs"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be 1 or more, got {getattr(self, name)}")
        for name in ("rot90", "mosaic"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} must be within 0..1, got {getattr(self, name)}")
        if self.seg_head not in ("unet", "lraspp"):
            raise UserError(f"seg_head must be 'unet' or 'lraspp', got {self.seg_head!r}")
        if self.det_stride not in (8, 16):
            raise UserError(f"det_stride must be 8 or 16, got {self.det_stride}")
        if not 0.0 < self.score_threshold < 1.0:
            raise UserError(f"score_threshold must be within 0..1, got {self.score_threshold}")
        for name in ("dropout", "label_smoothing", "zoom", "translate", "color", "grayscale"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"{name} must be within 0..1, got {getattr(self, name)}")
        if self.unfreeze < 0 or self.augment_copies < 0:
            raise UserError("unfreeze and augment_copies must be 0 or more")
        object.__setattr__(self, "vflip_swap", tuple(self.vflip_swap))
        for pair in self.vflip_swap:
            if pair.count(":") != 1 or "" in pair.split(":"):
                raise UserError(f"vflip_swap entries look like 'thumbs_up:thumbs_down', got {pair!r}")
        if self.backbone not in BACKBONES:
            raise UserError(f"backbone must be 'mobilenet_v2' or 'tiny', got {self.backbone!r}")
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
        """The exact config, as TOML that 'edgevision train --config' reads back."""
        lines = []
        for key, value in asdict(self).items():
            lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def load_toml(path: Path) -> dict:
    """Read a config file; unknown keys are errors."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as exc:
        raise UserError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from exc
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{path}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return data  # relative paths in it are relative to the current folder, like flags


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


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", help="DATA/<label>/*.jpg, or DATA/train/<label> and DATA/val/<label>")
    p.add_argument("--config", help="a TOML file of options, or a shipped one: thumbs, emotions, fingers")
    p.add_argument("--export", type=Path, metavar="OUT.onnx", help="export the run to this file, with its card")
    p.add_argument("--overwrite", action="store_true", help="with --export: replace an existing file")
    p.add_argument("--int8", action="store_true", help="with --export: also an INT8 (QDQ) variant")
    p.add_argument("--fp16", action="store_true", help="with --export: also an FP16 variant")
    for f in fields(TrainConfig):
        if f.name in ("data", "config_file"):
            continue
        flag = "--" + f.name.replace("_", "-")
        default_text = f.default if f.default is not MISSING else ""
        if f.type == "bool":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=f"(default {default_text})")
        elif f.type.startswith("tuple"):
            p.add_argument(flag, dest=f.name, default=None, help="comma-separated")
        else:
            kind = {"int": int, "float": float}.get(f.type, str)
            p.add_argument(flag, dest=f.name, type=kind, default=None, help=f"(default {default_text})")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Flags override the config file, which overrides the defaults."""
    values: dict = {}
    if args.config:
        path = resolve_config_path(args.config)
        values.update(load_toml(path))
        values.setdefault("config_file", str(path))  # a run's config.toml names its own origin
    if args.data:
        values["data"] = args.data
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is None or f.name == "data":
            continue
        if f.type.startswith("tuple"):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        values[f.name] = value
    if "data" not in values:
        raise UserError("no data folder: give DATA or a --config that names one")
    try:
        return TrainConfig(**values)
    except TypeError as exc:
        raise UserError(f"bad training options: {exc}") from exc


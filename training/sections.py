"""The tables of a training config ([augment], [classify], [keypoints], [segment], [detect]): small frozen
dataclasses whose fields carry their --help text. No TensorFlow here; training/options.py joins them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..deploy.errors import UserError

HEADS = ("regression", "heatmap")
CLASSIFY_HEADS = ("softmax", "mlp", "knn", "linear")  # knn, linear: numpy on models/backbone.onnx, no TensorFlow
NUMPY_HEADS = ("knn", "linear")
SEG_HEADS = ("unet", "lraspp")


def opt(default: Any, help: str, flag: str | None = None, choices: tuple = ()) -> Any:
    """A field with its --help text (and flag name, and choices) as metadata."""
    kind = {"default_factory": lambda: default} if isinstance(default, (list, dict)) else {"default": default}
    return field(**kind, metadata={"help": help, "flag": flag, "choices": choices})


def _in_range(owner: str, name: str, value: float, low: float, high: float, high_open: bool = True) -> None:
    if not (low <= value < high if high_open else low <= value <= high):
        raise UserError(f"{owner}{name} must be within {low}..{high}, got {value}")


@dataclass(frozen=True)
class Augment:
    """[augment]: random changes to training images (finetune; fast mode only with copies > 0)."""

    hflip: bool = opt(True, "left-right flips, where a mirror keeps the label")
    vflip_swap: tuple[str, ...] = opt((), "'a:b' pairs: an upside-down 'a' is a 'b' (thumbs_up:thumbs_down)")
    rotation_deg: float = opt(10.0, "small rotations within +- this many degrees")
    zoom: float = opt(0.2, "random scale range (crop in, or out with a border)")
    translate: float = opt(0.1, "random shift, a share of the image side")
    color: float = opt(0.2, "brightness / contrast / saturation jitter strength")
    grayscale: float = opt(0.1, "probability of a grey copy")
    lowres: float = opt(0.0, "probability of a low-resolution copy (shrunk to 24..64 px, then scaled back up)")
    rot90: float = opt(0.0, "detect: probability of a quarter turn (objects seen sideways)")
    mosaic: float = opt(0.0, "detect: probability of a 2x2 mosaic of four photos (smaller objects)")
    object_crop: float = opt(0.0, "segment: probability of a view around one object (portraits, half-body shots)")
    copies: int = opt(0, "fast mode: augmented feature copies per training image", flag="augment-copies")

    def __post_init__(self) -> None:
        object.__setattr__(self, "vflip_swap", tuple(self.vflip_swap))
        for pair in self.vflip_swap:
            if pair.count(":") != 1 or "" in pair.split(":"):
                raise UserError(f"vflip_swap entries look like 'thumbs_up:thumbs_down', got {pair!r}")
        for name in ("zoom", "translate", "color", "grayscale"):
            _in_range("augment.", name, getattr(self, name), 0.0, 1.0)
        for name in ("rot90", "mosaic", "lowres", "object_crop"):
            _in_range("augment.", name, getattr(self, name), 0.0, 1.0, high_open=False)
        _in_range("augment.", "rotation_deg", self.rotation_deg, 0.0, 180.0, high_open=False)
        if self.copies < 0:
            raise UserError(f"augment.copies must be 0 or more, got {self.copies}")


@dataclass(frozen=True)
class ClassifyOptions:
    """[classify]: the classifier's head (--head is shared with [keypoints]: the task picks the table)."""

    head: str = opt("softmax", "softmax or mlp (Keras); knn or linear (numpy on the ONNX backbone, fast mode, "
                               "no TensorFlow)", flag="head", choices=CLASSIFY_HEADS)
    backbone_onnx: str = opt("", "knn/linear: the feature backbone (default: the shipped models/backbone.onnx)")

    def __post_init__(self) -> None:
        if self.head not in CLASSIFY_HEADS:
            raise UserError(f"classify.head must be one of {', '.join(CLASSIFY_HEADS)}, got {self.head!r}")
        if self.backbone_onnx and not Path(self.backbone_onnx).is_file():
            raise UserError(f"backbone not found: {self.backbone_onnx} (the shipped one is models/backbone.onnx)")


@dataclass(frozen=True)
class KeypointOptions:
    """[keypoints]: named (x, y) points."""

    points: tuple[str, ...] = opt(("nose",), "the point names, as in labels.csv (comma-separated)")
    head: str = opt("regression", "heatmap (a map per point + soft-argmax) or regression", flag="head", choices=HEADS)
    flip_average: bool = opt(False, "average with the mirrored image's prediction (2x inference)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(self.points))
        if self.head not in HEADS:
            raise UserError(f"keypoints.head must be 'regression' or 'heatmap', got {self.head!r}")


@dataclass(frozen=True)
class SegmentOptions:
    """[segment]: a class per pixel."""

    classes: tuple[str, ...] = opt(("background", "person"), "mask ids 0, 1, ... (0 is the background)",
                                   flag="seg-classes")
    head: str = opt("unet", "unet (skips at 16, 8, 4) or lraspp (DeepLab-lite)", flag="seg-head",
                    choices=SEG_HEADS)
    yolo_classes: tuple[int, ...] = opt((0,), "YOLO polygon class ids that become mask ids 1, 2, ...")

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "yolo_classes", tuple(int(c) for c in self.yolo_classes))
        if self.head not in SEG_HEADS:
            raise UserError(f"segment.head must be 'unet' or 'lraspp', got {self.head!r}")


@dataclass(frozen=True)
class DetectOptions:
    """[detect]: boxes."""

    classes: tuple[str, ...] = opt(("object",), "class names (YOLO txt class ids index them)", flag="det-classes")
    rename: tuple[str, ...] = opt((), "'pattern:class' rules for VOC box names, e.g. '*-hand:hand'",
                                  flag="det-rename")
    stride: int = opt(16, "the box grid's stride: 16, or 8 for small objects (4x the cells)", flag="det-stride",
                      choices=(8, 16))
    score_threshold: float = opt(0.4, "the model's default minimum score ('run --score-threshold' overrides)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "rename", tuple(self.rename))
        from ..deploy.boxdata import is_rename_rule  # here: options load without numpy or OpenCV

        for rule in self.rename:
            if not is_rename_rule(rule, self.classes):
                raise UserError(f"detect.rename rules look like '*-hand:hand' with a class of detect.classes, "
                                f"got {rule!r}")
        if self.stride not in (8, 16):
            raise UserError(f"detect.stride must be 8 or 16, got {self.stride}")
        if not 0.0 < self.score_threshold < 1.0:
            raise UserError(f"detect.score_threshold must be within 0..1, got {self.score_threshold}")


SECTIONS = {"augment": Augment, "classify": ClassifyOptions, "keypoints": KeypointOptions, "segment": SegmentOptions,
            "detect": DetectOptions}

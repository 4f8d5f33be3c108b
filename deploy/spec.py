"""The task spec that travels inside every edgevision ONNX file.

The spec is one JSON value stored in the ONNX ``metadata_props`` under :data:`SPEC_KEY`.
It says what the model does (``kind``), what it expects (``input_hw``, channel order, value
range) and what the runner needs to decode its outputs. Nothing about a model is hard-coded
in the runtime, and there are no side files of labels.

Output contracts per kind (batch first, NHWC input):

- ``classify``: one output ``(n, classes)``, probabilities (``output="probs"``) or logits.
- ``keypoints``: one output ``(n, k, 2)``, ``(n, k, 3)`` or ``(n, 2k)``: x, y normalised to the
  model input (0..1), an optional third value is a confidence in 0..1.
- ``segment``: one output ``(n, h, w, classes)``, probabilities or logits at any resolution.
- ``detect``: two outputs, ``boxes (n, a, 4)`` as normalised ``xyxy`` in the model input and
  ``scores (n, a, classes)`` in 0..1; the runner thresholds and runs NMS.

A model made elsewhere says so with ``head``: ``yolo`` (Ultralytics' raw layouts, NMS by the runner) or
``yolo-end2end`` (boxes already chosen in the graph); deploy/tasks/yolo.py reads those layouts. ``layout``
says whether the input is NHWC (edgevision's) or NCHW (PyTorch's).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Literal, get_args

from .errors import UserError

SPEC_KEY = "edgevision.spec"
SPEC_VERSION = 1

TaskKind = Literal["classify", "keypoints", "segment", "detect"]
TASK_KINDS: tuple[str, ...] = get_args(TaskKind)
ResizeMode = Literal["stretch", "letterbox", "crop"]  # crop: fill the input, cut the longer side
OutputKind = Literal["probs", "logits"]
Layout = Literal["NHWC", "NCHW"]
Head = Literal["edgevision", "yolo", "yolo-end2end"]
# Written into the JSON only when they differ from these defaults, so a file exported as before reads
# in an older edgevision as before.
_OPTIONAL = {"layout": "NHWC", "head": "edgevision", "keypoint_names": ()}
MAX_SIDE = 4096  # input_hw: a larger input is a spec gone wrong (a 100000-pixel side is 120 GB of float32)
MAX_JSON_CHARS = 1_000_000  # a spec or pipeline file: 1000 labels are ~20 kB


@dataclass(frozen=True)
class Headline:
    """A task's headline metric: its key in metric reports, its name for people, its direction."""

    key: str
    name: str
    higher_is_better: bool

    def loss(self, before: float, after: float) -> float:
        """How much worse ``after`` is than ``before`` (> 0 is worse)."""
        return before - after if self.higher_is_better else after - before


class SpecError(UserError, ValueError):
    """The spec is missing, malformed or inconsistent."""


def parse_json(text: str | bytes, what: str) -> object:
    """``text`` parsed as JSON, for spec metadata and pipeline files: a SpecError that names ``what`` when it
    is not JSON, is over 1 MB, or nests deeper than Python's parser goes (``[[[...]]]``: a RecursionError)."""
    if len(text) > MAX_JSON_CHARS:
        raise SpecError(f"{what} is {len(text):,} characters long, over the {MAX_JSON_CHARS:,} an edgevision file "
                        "has room for")
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise SpecError(f"{what} nests its JSON too deep to read") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{what} is not valid JSON: {exc}") from exc


def check_scaling(mean: object, std: object) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``mean`` and ``std`` as three finite floats each, std positive: (pixel - mean) / std fed to a model
    must be a number (a NaN mean made every score NaN; an infinite std fed zeros, one answer for all)."""
    out = []
    for name, values in (("mean", mean), ("std", std)):
        value = tuple(float(v) for v in values)
        if len(value) != 3:
            raise SpecError(f"{name} must have 3 values (one per channel), got {value}")
        if not all(math.isfinite(v) for v in value):
            raise SpecError(f"{name} must be finite numbers, got {value}")
        out.append(value)
    mean_t, std_t = out
    if any(v == 0 for v in std_t):
        raise SpecError(f"std must not contain zeros, got {std_t}")
    if not all(1e-6 <= v <= 1e6 for v in std_t) or not all(abs(v) <= 1e6 for v in mean_t):
        raise SpecError(f"std must be within 1e-6..1e6 and mean within -1e6..1e6 (pixel units), got mean "
                        f"{mean_t}, std {std_t}")
    return mean_t, std_t


@dataclass(frozen=True)
class TaskSpec:
    """What a model does and how to feed it; serialised into the ONNX metadata."""

    kind: TaskKind
    input_hw: tuple[int, int]  # model input (height, width)
    labels: tuple[str, ...]  # class names, or keypoint names for kind "keypoints"
    color: Literal["RGB", "BGR"] = "RGB"  # channel order the model expects
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # runner feeds (pixel - mean) / std
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (0, 1): pixels 0..255, scaling in-graph
    resize: ResizeMode = "stretch"
    output: OutputKind = "probs"
    score_threshold: float = 0.25  # detect: default minimum score
    iou_threshold: float = 0.45  # detect: default NMS IoU
    version: int = SPEC_VERSION
    layout: Layout = "NHWC"  # the input tensor: (n, h, w, 3), or (n, 3, h, w) for models from PyTorch
    head: Head = "edgevision"  # how the outputs are laid out (see the module docstring)
    keypoint_names: tuple[str, ...] = ()  # a YOLO pose head: the points of each box (labels name the classes)

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise SpecError(f"kind must be one of {', '.join(TASK_KINDS)}, got {self.kind!r}")
        hw = tuple(self.input_hw)
        if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw):
            raise SpecError(f"input_hw must be two positive integers (height, width), got {self.input_hw!r}")
        if max(hw) > MAX_SIDE:
            raise SpecError(f"input_hw must be at most {MAX_SIDE} pixels a side, got {hw[0]}x{hw[1]}")
        object.__setattr__(self, "input_hw", hw)
        labels = tuple(self.labels)
        if not labels:
            raise SpecError("labels must name at least one class or keypoint")
        if not all(isinstance(label, str) and label.strip() for label in labels):
            raise SpecError(f"labels must be non-empty strings, got {list(labels[:5])!r:.200}")
        if len(set(labels)) != len(labels):
            raise SpecError(f"labels must be unique, got {list(labels)}")
        if self.kind == "classify" and len(labels) < 2:
            raise SpecError(f"a classifier needs at least two labels, got {list(labels)}")
        object.__setattr__(self, "labels", labels)
        if self.color not in ("RGB", "BGR"):
            raise SpecError(f"color must be 'RGB' or 'BGR', got {self.color!r}")
        mean, std = check_scaling(self.mean, self.std)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.resize not in get_args(ResizeMode):
            raise SpecError(f"resize must be 'stretch', 'letterbox' or 'crop', got {self.resize!r}")
        if self.resize == "crop" and self.kind not in ("classify", "keypoints"):
            raise SpecError(f"resize 'crop' is for classify and keypoints models, not {self.kind!r} (parts of the "
                            "frame would be cut off): use 'letterbox'")
        if self.output not in get_args(OutputKind):
            raise SpecError(f"output must be 'probs' or 'logits', got {self.output!r}")
        for name in ("score_threshold", "iou_threshold"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise SpecError(f"{name} must be within 0..1, got {value}")
            object.__setattr__(self, name, value)
        if self.layout not in get_args(Layout):
            raise SpecError(f"layout must be 'NHWC' or 'NCHW', got {self.layout!r}")
        if self.head not in get_args(Head):
            raise SpecError(f"head must be one of {', '.join(get_args(Head))}, got {self.head!r}")
        points = tuple(self.keypoint_names)
        if not all(isinstance(name, str) and name.strip() for name in points) or len(set(points)) != len(points):
            raise SpecError(f"keypoint_names must be unique non-empty strings, got {list(points[:5])!r:.200}")
        if points and (self.kind != "keypoints" or self.head == "edgevision"):
            raise SpecError("keypoint_names belong to a YOLO pose head (kind 'keypoints', head 'yolo' or "
                            f"'yolo-end2end'), not to kind {self.kind!r} with head {self.head!r}")
        object.__setattr__(self, "keypoint_names", points)
        if self.version != SPEC_VERSION:
            raise SpecError(
                f"spec version {self.version} is not supported by this edgevision (it reads {SPEC_VERSION})"
            )

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if k not in _OPTIONAL or v != _OPTIONAL[k]}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> TaskSpec:
        if not isinstance(data, dict):
            raise SpecError(f"the spec must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown spec keys: {', '.join(unknown)}")
        missing = sorted({"kind", "input_hw", "labels"} - set(data))
        if missing:
            raise SpecError(f"the spec lacks required keys: {', '.join(missing)}")
        try:
            return cls(**data)
        except SpecError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. a number where a tuple belongs, 'a' as a mean
            raise SpecError(f"malformed spec: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> TaskSpec:
        return cls.from_dict(parse_json(text, "the spec"))

"""A feature backbone (models/backbone.onnx) run with onnxruntime, and an on-disk cache of its features
per image file. No TensorFlow: heads are fitted on these features by deploy/heads.py, on a Jetson too.

A backbone file carries its preprocessing under the metadata key :data:`BACKBONE_KEY` (a
:class:`BackboneSpec`): RGB, pixels 0..255 (scaling in the graph), stretched to the input size. Its
height and width are free; the trainer picks one (``input_hw`` is the default) and the features of an
image depend on it, so the size is part of the cache key.

The cache lives in ``$EDGEVISION_CACHE/features`` (default ``~/.cache/edgevision/features``), one
folder per backbone file content (sha256) and input size, one ``.npy`` per image keyed by the image's
resolved path, byte size and modification time: an edited or replaced photo is embedded again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .images import UnreadableImage, load_image
from .onnxmeta import file_sha256, read_header
from .ops import RESIZE_VERSION, preprocess
from .spec import MAX_SIDE, check_scaling, parse_json

BACKBONE_KEY = "edgevision.backbone"


@dataclass(frozen=True)
class BackboneSpec:
    """What a feature backbone expects and gives; serialised into its ONNX metadata."""

    input_hw: tuple[int, int]  # the default (height, width); the graph takes any size
    dim: int  # feature length
    name: str = ""
    output: str = "features"
    color: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "stretch"

    def __post_init__(self) -> None:
        hw = tuple(int(v) for v in self.input_hw)
        if len(hw) != 2 or min(hw) < 32:
            raise UserError(f"backbone input_hw must be two sides of 32 px or more, got {self.input_hw!r}")
        if max(hw) > MAX_SIDE:
            raise UserError(f"backbone input_hw must be at most {MAX_SIDE} pixels a side, got {hw[0]}x{hw[1]}")
        object.__setattr__(self, "input_hw", hw)
        mean, std = check_scaling(self.mean, self.std)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.dim < 1 or self.color not in ("RGB", "BGR") or self.resize not in ("stretch", "letterbox"):
            raise UserError(f"bad backbone spec: dim {self.dim}, color {self.color!r}, resize {self.resize!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def at_size(self, size: int | None) -> BackboneSpec:
        """The same spec fed at ``size`` x ``size`` (None: its own default)."""
        if size is None:
            return self
        return BackboneSpec(**{**asdict(self), "input_hw": (size, size)})


def read_backbone_spec(path: Path) -> BackboneSpec:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"backbone not found: {path} (the repository ships models/backbone.onnx; pass --backbone-onnx)")
    text = read_header(path).metadata.get(BACKBONE_KEY)
    if text is None:
        raise UserError(f"{path} is not a feature backbone (no {BACKBONE_KEY!r} metadata): use models/backbone.onnx")
    try:
        return BackboneSpec(**parse_json(text, "the backbone spec"))
    except (TypeError, ValueError, OverflowError) as exc:
        raise UserError(f"{path} has a bad backbone spec: {exc}") from exc


class Backbone:
    """An onnxruntime session on a feature backbone: BGR frames -> (n, dim) float32 features."""

    def __init__(self, path: str | Path, size: int | None = None, options=None) -> None:
        from .runner import RunnerOptions
        from .sessions import ProviderSession

        self.path = Path(path)
        self.spec = read_backbone_spec(self.path).at_size(size)
        options = options or RunnerOptions()
        # fed at one size: TensorRT's profile fixes height and width and covers batches 1 to max_batch
        self.sessions = ProviderSession(self.path, options.providers, options.config, self.spec.input_hw,
                                        options.require_gpu, options.notice)
        self.max_batch = options.config.max_batch
        self.input_name = self.session.get_inputs()[0].name
        self.digest = file_sha256(self.path)

    @property
    def session(self):
        return self.sessions.session

    @property
    def report(self):
        return self.sessions.report

    def __call__(self, frames_bgr: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
        out = []
        batch_size = min(batch_size, self.max_batch)
        for i in range(0, len(frames_bgr), batch_size):
            batch, _ = preprocess(frames_bgr[i : i + batch_size], self.spec)  # (b, h, w, 3) float32
            out.append(self.sessions.run([self.spec.output], {self.input_name: batch})[0])
        if not out:
            return np.zeros((0, self.spec.dim), np.float32)
        return np.concatenate(out).astype(np.float32)


def cache_root() -> Path:
    return Path(os.environ.get("EDGEVISION_CACHE", Path.home() / ".cache" / "edgevision")) / "features"


class FeatureCache:
    """Features per image file on disk, under one backbone (content hash) and input size."""

    def __init__(self, backbone: Backbone, root: Path | None = None) -> None:
        self.backbone = backbone
        h, w = backbone.spec.input_hw
        # the resize is part of the name: features of the same file made another way are never reused
        self.folder = Path(root or cache_root()) / f"{backbone.digest[:16]}-{h}x{w}-{RESIZE_VERSION}"
        self.hits = self.misses = 0

    def _entry(self, path: Path) -> Path:
        st = path.stat()
        key = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.npy"

    def features(self, paths: list[Path], progress: Callable[[int, int], None] | None = None,
                 batch_size: int = 16, notice: Callable[[str], None] | None = None) -> tuple[np.ndarray, list[Path]]:
        """(features of the readable images in order (n, dim), the unreadable paths skipped); ``notice`` is
        told why each was skipped (a pipe, an image over the pixel limit, a broken file), one line each."""
        found: dict[int, np.ndarray] = {}
        todo: list[tuple[int, Path]] = []
        skipped: list[Path] = []
        for i, path in enumerate(paths):
            try:
                entry = self._entry(path)
            except OSError:
                skipped.append(path)
                continue
            try:
                found[i] = np.load(entry)
                self.hits += 1
            except (OSError, ValueError):  # not cached yet, or a torn file: embed it again
                todo.append((i, entry))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            frames, kept = [], []
            for i, entry in chunk:
                try:
                    bgr = load_image(paths[i])
                except UnreadableImage as exc:
                    skipped.append(paths[i])
                    if notice:
                        notice(f"skipped: {exc}")
                else:
                    frames.append(bgr)
                    kept.append((i, entry))
            if frames:
                for (i, entry), feature in zip(kept, self.backbone(frames, batch_size)):
                    found[i] = feature
                    self._store(entry, feature)
                    self.misses += 1
            if progress:
                progress(min(start + batch_size, len(todo)), len(todo))
        order = sorted(found)
        dim = self.backbone.spec.dim
        feats = np.stack([found[i] for i in order]) if order else np.zeros((0, dim), np.float32)
        skipped_set = set(skipped)
        return feats, [p for p in paths if p in skipped_set]

    def _store(self, entry: Path, feature: np.ndarray) -> None:
        """Write atomically: a reader never sees half a file; a full or read-only disk only costs the cache."""
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".npy", dir=entry.parent)
            with os.fdopen(fd, "wb") as f:
                np.save(f, feature.astype(np.float32))
            os.replace(tmp, entry)
        except OSError:
            pass

"""A kNN classifier that learns as photos are saved: the collect window's live head (and, later, the
browser page's). numpy + onnxruntime (+ onnx for export); thread-safe, so a worker thread may add
photos while another asks for predictions.

    live = LiveKnn("models/backbone.onnx", ("thumbs_up", "thumbs_down"))
    live.add("data/thumbs_up/a.jpg", "thumbs_up")      # embeds the photo (cached on disk), True if readable
    live.remove("data/thumbs_up/a.jpg")                # e.g. after an undo; True if it was there
    live.counts()                                       # {'thumbs_up': 0, 'thumbs_down': 0}
    live.predict(frame_bgr)                             # a Classification, or None until 2 classes have photos
    live.export("models/mine.onnx", overwrite=False)    # ONE classify ONNX file: backbone + kNN head
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .embed import Backbone, FeatureCache
from .errors import UserError
from .heads import KnnHead, join
from .images import check_new_output, publish, temp_beside
from .tasks.classify import Classification


class LiveKnn:
    """kNN (cosine, class-balanced votes) over the photos added so far; ``k`` shrinks to the photos there are."""

    def __init__(self, backbone: str | Path, classes: Sequence[str], k: int = 5, size: int | None = None,
                 options=None, cache_root: Path | None = None) -> None:
        self.classes = tuple(classes)
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise UserError(f"a live head needs two or more distinct classes, got {list(self.classes)}")
        if k < 1:
            raise UserError(f"k must be 1 or more, got {k}")
        self.k = k
        self.backbone = Backbone(backbone, size, options)
        self.cache = FeatureCache(self.backbone, cache_root)
        self._lock = threading.Lock()
        self._items: dict[Path, tuple[int, np.ndarray]] = {}  # path -> (class id, feature)
        self._head: KnnHead | None = None
        self._dirty = True

    def add(self, path: str | Path, label: str) -> bool:
        """Embed a saved photo under ``label``; False when it cannot be read."""
        if label not in self.classes:
            raise UserError(f"unknown class {label!r}; the live head knows {', '.join(self.classes)}")
        path = Path(path)
        feats, skipped = self.cache.features([path])
        if skipped:
            return False
        with self._lock:
            self._items[path] = (self.classes.index(label), feats[0])
            self._dirty = True
        return True

    def remove(self, path: str | Path) -> bool:
        with self._lock:
            found = self._items.pop(Path(path), None) is not None
            self._dirty = self._dirty or found
        return found

    def counts(self) -> dict[str, int]:
        with self._lock:
            ids = [c for c, _ in self._items.values()]
        return {name: ids.count(i) for i, name in enumerate(self.classes)}

    def head(self) -> KnnHead | None:
        """The kNN head over the photos so far; None until two classes have a photo."""
        with self._lock:
            if self._dirty:
                labels = np.array([c for c, _ in self._items.values()], np.int64)
                if len(set(labels.tolist())) < 2:
                    self._head = None
                else:
                    feats = np.stack([f for _, f in self._items.values()])
                    self._head = KnnHead(feats, labels, self.classes, min(self.k, len(labels)))
                self._dirty = False
            return self._head

    def predict(self, frame_bgr: np.ndarray) -> Classification | None:
        head = self.head()
        if head is None:
            return None
        return Classification(self.classes, head.probs(self.backbone([frame_bgr]))[0])

    def export(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the backbone + this kNN head as one classify ONNX file (refuses an existing file unless
        ``overwrite``); written to a temporary name first, so a failure leaves nothing half-made."""
        import onnx

        head = self.head()
        if head is None:
            raise UserError("the live head needs photos of two classes or more before it can be exported")
        path = check_new_output(Path(path), overwrite)
        with temp_beside(path) as tmp:
            onnx.save(join(self.backbone.path, head, self.backbone.spec.input_hw), tmp)
            publish(tmp, path)
        return path

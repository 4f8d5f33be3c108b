"""``collect --live-head knn``: a kNN head that learns from the photos as they are saved.

A worker thread owns every slow step (embedding a saved photo, predicting on the newest frame, exporting),
so the collect window never waits for it: the window hands over the saves and undos it sees and the
newest frame, and draws the last prediction and the per-class counts. ``Enter`` exports the head as
one classify ONNX file (deploy/liveknn.py).
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from ..deploy.draw import put_label
from ..deploy.errors import UserError
from ..deploy.images import list_images
from ..deploy.liveknn import LiveKnn


def next_free(path: Path) -> Path:
    """``path``, or NAME-2.onnx, NAME-3.onnx, ... : the first that does not exist."""
    n, candidate = 1, path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


class LiveHead:
    """The worker thread around a :class:`LiveKnn` and what the window shows of it."""

    def __init__(self, live: LiveKnn, out: Path, overwrite: bool = False) -> None:
        self.live, self.out, self.overwrite = live, Path(out), overwrite
        self._jobs: queue.Queue = queue.Queue()
        self._frame: np.ndarray | None = None
        self._frame_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self.known: dict[Path, str] = {}  # the photos handed over (path -> label)
        self._session: set[Path] = set()  # this session's saves at the last sync
        self.result = None  # the last Classification, or None
        self.counts = {name: 0 for name in live.classes}
        self.message = "live kNN: learning from the saved photos"
        self.exported: list[Path] = []
        self.thread = threading.Thread(target=self._work, name="live-knn", daemon=True)
        self.thread.start()

    # --- called by the window (never blocks) ----------------------------------------------------
    def add_folder_photos(self, root: Path, splits: tuple[str, ...]) -> None:
        """Photos already in DATA/<class>/ (or DATA/{train,val}/<class>/) from earlier sessions."""
        for split in splits:
            for name in self.live.classes:
                folder = (root / split if split else root) / name
                if folder.is_dir():
                    for path in list_images(folder):
                        self.sync_add(path, name)

    def sync_add(self, path: Path, label: str) -> None:
        if path not in self.known:
            self.known[path] = label
            self._jobs.put(("add", path, label))
            self._wake.set()

    def sync(self, session: dict[Path, str]) -> None:
        """This session's saves as the collector holds them now: new ones are added, undone ones removed."""
        for path, label in session.items():
            self.sync_add(path, label)
        for path in self._session - set(session):
            if not path.exists():  # undone: moved to the trash
                self.known.pop(path, None)
                self._jobs.put(("remove", path, ""))
                self._wake.set()
        self._session = set(session)

    def offer(self, frame: np.ndarray) -> None:
        with self._frame_lock:
            self._frame = frame
        self._wake.set()

    def request_export(self) -> None:
        self._jobs.put(("export", None, ""))
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        self._stop = True
        self._wake.set()
        self.thread.join(timeout)

    # --- the worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop:
            self._wake.wait(0.5)
            self._wake.clear()
            while not self._stop:
                try:
                    job, path, label = self._jobs.get_nowait()
                except queue.Empty:
                    break
                self._do(job, path, label)
            with self._frame_lock:
                frame, self._frame = self._frame, None
            if frame is not None and not self._stop:
                try:
                    self.result = self.live.predict(frame)
                except Exception as exc:  # onnxruntime's own errors: shown, never fatal to the window
                    self.message = f"live kNN: prediction failed ({type(exc).__name__})"

    def _do(self, job: str, path: Path | None, label: str) -> None:
        try:
            if job == "add":
                if not self.live.add(path, label):
                    self.message = f"live kNN: could not read {path.name}, left out"
            elif job == "remove":
                self.live.remove(path)
            else:
                target = self.out if self.overwrite else next_free(self.out)
                self.live.export(target, overwrite=self.overwrite)
                self.exported.append(target)
                self.message = f"exported the live kNN head to {target}"
            self.counts = self.live.counts()
        except UserError as exc:
            self.message = f"live kNN: {exc}"
        except OSError as exc:
            self.message = f"live kNN: {exc.strerror or exc}: {exc.filename or ''}"

    # --- drawing ---------------------------------------------------------------------------------
    def draw(self, view: np.ndarray) -> None:
        s = max(0.5, min(view.shape[:2]) / 480)
        x = view.shape[1] - int(230 * s)
        result = self.result
        head = f"kNN: {result.label} {result.score:.0%}" if result is not None else "kNN: needs 2 classes"
        lines = [head, *(f"{name}: {n}" for name, n in self.counts.items()), "Enter: export  s: save"]
        for row, text in enumerate(lines):
            color = (80, 200, 60) if row == 0 and result is not None else (255, 255, 255)
            put_label(view, text, (x, int((26 + row * 24) * s)), color, 0.6 * s)
        if self.message:
            put_label(view, self.message, (int(10 * s), view.shape[0] - int(34 * s)), (255, 255, 255), 0.5 * s)

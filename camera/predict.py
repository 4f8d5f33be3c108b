"""``edgevision predict``: image files and folders in, one JSON line per image out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import cv2

from ..deploy.chain import ChainRunner
from ..deploy.errors import UserError, os_cause
from ..deploy.images import UnreadableImage, check_outside_inputs, load_image, publish, temp_beside, write_file
from ..deploy.results import Classification, Segmentation, json_line
from ..deploy.runner import Runner
from ..deploy.tasks.chain import Chained
from .overlay import draw_result


@dataclass
class PredictReport:
    images: int = 0
    skipped: list[Path] = field(default_factory=list)
    scored: int = 0  # classification results whose folder name is one of the labels
    correct: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None


def _batches(paths: list[Path], size: int, report: PredictReport,
             notice: Callable[[str], None] | None) -> Iterator[list[tuple[Path, object]]]:
    batch = []
    for path in paths:
        try:
            image = load_image(path)
        except UnreadableImage as exc:  # a pipe, an image bomb, a broken file: said, counted, skipped
            report.skipped.append(path)
            if notice:
                notice(f"skipped: {exc}")
            continue
        batch.append((path, image))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict(
    runner: Runner,
    paths: list[Path],
    out: TextIO,
    batch_size: int = 8,
    masks_dir: Path | None = None,
    draw_dir: Path | None = None,
    inputs: list[Path] | None = None,
    notice: Callable[[str], None] | None = None,
) -> PredictReport:
    """Write one JSON line per readable image; count unreadable ones (and tell ``notice`` why, one line each);
    score by folder name where it is a label. ``inputs``: the files and folders ``paths`` came from; the
    --masks and --draw folders may not be inside one (the next run would read their files as images)."""
    if batch_size < 1:
        raise UserError(f"--batch must be 1 or more, got {batch_size}")
    if masks_dir is not None and (runner.spec.kind != "segment" or runner.spec.head != "edgevision"):
        yolo = "" if runner.spec.head == "edgevision" else " (YOLO: its JSON has a polygon per box)"
        raise UserError(f"--masks needs a segmentation model (edgevision's, a class per pixel); {runner.path} is a "
                        f"{runner.spec.kind} model{yolo}")
    for flag, folder in (("--masks", masks_dir), ("--draw", draw_dir)):
        if folder is not None:
            if folder.exists() and not folder.is_dir():
                raise UserError(f"{flag} {folder} is a file: give a folder")
            check_outside_inputs(folder, [*(inputs or []), *paths], flag)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create {flag} folder {folder}: {exc.strerror}") from exc
    report = PredictReport()
    written: set[Path] = set()

    def new_file(folder: Path, path: Path, flag: str) -> Path:
        """folder/<stem>.png; a second image of the same name (another class folder) gets its folder's
        name in front; a file that was there before is never replaced."""
        target = folder / f"{path.stem}.png"
        if target in written:
            target = folder / f"{path.parent.name}_{path.stem}.png"
        if target.exists():
            raise UserError(f"{target} exists: choose another {flag} folder ({report.images} images done)")
        written.add(target)
        return target

    def save(target: Path, image) -> None:
        """Encoded in memory, written beside the target and renamed into place once complete: a full disk
        leaves no empty or half PNG under the target's name (cv2.imwrite said True for 0 bytes)."""
        try:
            ok, encoded = cv2.imencode(".png", image)
        except cv2.error:
            ok = False
        try:
            if not ok:
                raise OSError(f"PNG encoding of a {image.shape} image failed")
            with temp_beside(target) as tmp:
                write_file(tmp, encoded.tobytes())
                publish(tmp, target)
        except (OSError, UserError) as exc:
            cause = os_cause(exc)  # temp_beside's full disk comes as a UserError
            if cause is None:
                raise
            raise UserError(f"could not write {target} ({cause.strerror or cause}: disk full, or the folder not "
                            f"writable); results for {report.images} images were printed, their files written"
                            ) from cause
    labels = set(runner.spec.labels)
    chain_labels = set(runner.then.spec.labels) if isinstance(runner, ChainRunner) else set()
    for batch in _batches(paths, batch_size, report, notice):
        results, _ = runner.infer([image for _, image in batch])
        for (path, image), result in zip(batch, results):
            record = {"file": str(path), **result.to_dict()}
            if masks_dir is not None and isinstance(result, Segmentation):
                mask_path = new_file(masks_dir, path, "--masks")
                save(mask_path, result.class_map)
                record["mask"] = str(mask_path)
            if draw_dir is not None:
                drawn_path = new_file(draw_dir, path, "--draw")
                drawn = image.copy()
                draw_result(drawn, result)
                save(drawn_path, drawn)
                record["drawn"] = str(drawn_path)
            out.write(json_line(record))
            report.images += 1
            if isinstance(result, Classification) and path.parent.name in labels:
                report.scored += 1
                report.correct += int(result.label == path.parent.name)
            elif isinstance(result, Chained) and path.parent.name in chain_labels:
                # A chain is scored by its most confident box's answer (no box: wrong).
                report.scored += 1
                report.correct += int(result.top_label() == path.parent.name)
    out.flush()
    return report

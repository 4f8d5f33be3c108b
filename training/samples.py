"""What a training stream (training/stream.py) reads: one split's samples, one per image file, each
decoded on demand into a few numpy arrays by its task's loader. No TensorFlow here: the task data
modules (data.py, keypoints.py, segmentation.py, detection.py) make their sources without it.

A loader returns the decoded, resized sample before augmentation (what an on-disk cache keeps),
or None when the image cannot be read. Its last ``info`` arrays are small facts about the file
(where it went in the model input, a mask's foreground share) that the first scan keeps in memory
for the metrics, so that no image has to be held for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..deploy.images import read_image
from ..deploy.ops import Placement, fit_to_input, to_model_color
from ..deploy.spec import TaskSpec

ArraySpec = tuple[str, tuple]  # an array's dtype name and shape; None in a shape: any length


@dataclass(frozen=True)
class Source:
    """One split's samples, as a stream reads them."""

    name: str  # in logs and cache file names, e.g. 'keypoints-train'
    paths: tuple[Path, ...]  # the image file of each sample (reported when it cannot be read)
    stamps: tuple[str, ...]  # each sample's label as text: a cache's name changes with them
    size: int  # the side of the images the loader makes (in cache file names)
    load: Callable[[int], tuple[np.ndarray, ...] | None]  # sample i's arrays; None: unreadable image
    specs: tuple[ArraySpec, ...]  # of load's arrays, in order
    info: int = 0  # the last ``info`` arrays are per-file facts (fixed shapes) the scan keeps
    variant: str = ""  # what else shapes the samples (class mapping, shrink rule): part of cache names

    def __post_init__(self) -> None:
        if len(self.stamps) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.stamps)} stamps")
        if not 0 <= self.info <= len(self.specs):
            raise ValueError(f"info must be 0..{len(self.specs)}, got {self.info}")
        if any(None in shape for _, shape in self.specs[len(self.specs) - self.info :]):
            raise ValueError("info arrays must have fixed shapes (the scan batches them)")


PLACEMENT: ArraySpec = ("float64", (6,))  # a Placement as an info array


def placement_row(placement: Placement) -> np.ndarray:
    """(6,) scale x, y, pad x, y, source height, width."""
    return np.array([*placement.scale_xy, *placement.pad_xy, *placement.source_hw], np.float64)


def placement_of(row: np.ndarray) -> Placement:
    return Placement((float(row[0]), float(row[1])), (float(row[2]), float(row[3])), (int(row[4]), int(row[5])))


def model_input(path: Path, spec: TaskSpec) -> tuple[np.ndarray, Placement] | None:
    """An image file as the runtime feeds it to the model (its colour order and resize mode, the
    float cast aside): (input_hw + (3,)) uint8 and where the source went; None when unreadable."""
    bgr = read_image(path)
    if bgr is None:
        return None
    return fit_to_input(to_model_color(bgr, spec.color), spec.input_hw, spec.resize)

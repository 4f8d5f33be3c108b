"""A grey, low-resolution copy of a class-folder dataset, as extra training data for faces or hands
that a far or cheap camera (or a 48 x 48 FER-style crop) shows: each training photo once, shrunk to a
seeded random side of ``sizes`` and scaled back up; each validation photo at 48 pixels.

    python -m edgevision.training.lowres ../shared/data/emotions runs/emotions_lowres

(The ``[augment] lowres`` option does the same on the fly; on the emotions set this fixed copy measured
better, see models/emotions.md.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from ..deploy.errors import UserError
from ..deploy.images import IMAGE_SUFFIXES, read_image

SIZES = (32, 40, 48, 64)


def write_lowres_copy(src: Path, out: Path, sizes: tuple[int, ...] = SIZES, val_size: int = 48, seed: int = 0) -> dict:
    """Write OUT/{train,val}/<class>/ (the names of SRC's); returns how many photos per split."""
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty: choose a new folder (nothing is overwritten)")
    rng, counts = np.random.default_rng(seed), {}
    for split in ("train", "val"):
        n = 0
        for path in sorted((src / split).rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            image = read_image(path)
            if image is None:
                continue
            h, w = image.shape[:2]
            side = val_size if split == "val" else int(rng.choice(sizes))
            grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            grey = cv2.resize(cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA), (w, h),
                              interpolation=cv2.INTER_LINEAR)
            target = out / split / path.relative_to(src / split)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)):
                raise UserError(f"could not write {target}")
            n += 1
        counts[split] = n
    (out / "SOURCE.md").write_text(f"# A grey, low-resolution copy of {src}\n\n- Command: python -m "
                                   f"edgevision.training.lowres {src} {out}\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="a dataset with train/ and val/ class folders")
    parser.add_argument("out", type=Path, help="a new folder")
    args = parser.parse_args(argv)
    try:
        print(write_lowres_copy(args.src, args.out))
    except UserError as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

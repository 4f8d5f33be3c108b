"""Rebuild thumbs_demo.mp4 from the thumbs validation photos (MIT licence, see LICENSE.thumbs).

    python camera/samples/make_clip.py ../shared/data/thumbs/val camera/samples/thumbs_demo.mp4

Each photo is held for a second (12 frames at 12 FPS) at 480x360, in name order, so the
demo shows the shipped thumbs model photos it was not trained on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2

FPS, HOLD, SIZE = 12, 12, (480, 360)


def main(src: str, out: str) -> int:
    photos = sorted(Path(src).rglob("*.jpg"))
    if not photos:
        print(f"no .jpg photos under {src}", file=sys.stderr)
        return 1
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for path in photos:
        frame = cv2.resize(cv2.imread(str(path)), SIZE, interpolation=cv2.INTER_AREA)
        for _ in range(HOLD):
            writer.write(frame)
    writer.release()
    print(f"wrote {out}: {len(photos) * HOLD} frames from {len(photos)} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))

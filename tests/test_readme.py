"""Every fenced code block of README.md and of the *.md files under camera/, deploy/ and training/ runs as
written: ``python`` blocks in a fresh interpreter, ``sh``/``bash`` blocks in bash (stopping at the first
failing command), each in a scratch folder laid out like a checkout (``models/`` with links to the
shipped files, ``camera/``, ``deploy/``, ``training/``), so nothing is written into the repository.

A block that cannot run here (a camera, a Jetson, minutes of training) says so on the line before its
fence, ``<!-- not run: needs a camera -->``; those are reported as skips with their reason, so a new
block runs unless someone decided otherwise. ``text`` blocks (layouts, file trees) are not code; a block
without a language is an error: tag it.

What the README names as the user's own files is made here from the sample clip's frames:
``photos/`` (a folder of photos), ``more.jpg``, and ``data/thumbs_up/a.jpg``... (class folders).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
from conftest import REPO
from test_cli import HEADLESS

DOCS = [REPO / "README.md", *sorted(p for folder in ("camera", "deploy", "training")
                                    for p in (REPO / folder).rglob("*.md"))]
RUN = {"python": "python", "py": "python", "sh": "sh", "bash": "sh", "shell": "sh", "console": "sh"}
NOT_CODE = {"text", "toml", "json", "csv"}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(\S.*?)\s*-->\s*$")
SAMPLE_CLIP = REPO / "camera" / "samples" / "thumbs_demo.mp4"


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None  # the reason given in the comment before the fence

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def code_blocks(doc: Path) -> list[Block]:
    lines, blocks, i = doc.read_text(encoding="utf-8").splitlines(), [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, lang, end = len(opening.group(1)), opening.group(2).lower(), i + 1
        while end < len(lines) and not re.match(r"^\s*```\s*$", lines[end]):
            end += 1
        assert end < len(lines), f"{doc.name}:{i + 1}: a code block that is never closed"
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        reason = NOT_RUN.match(before)
        code = "\n".join(line[indent:] for line in lines[i + 1 : end]) + "\n"
        blocks.append(Block(doc, i + 1, lang, code, reason.group(1) if reason else None))
        i = end + 1
    return blocks


BLOCKS = [b for doc in DOCS for b in code_blocks(doc)]
CODE = [b for b in BLOCKS if b.lang not in NOT_CODE]


def test_every_code_block_says_its_language():
    untagged = [b.name for b in BLOCKS if b.lang not in RUN and b.lang not in NOT_CODE]
    assert not untagged, f"tag these blocks (```sh, ```python, or ```text when they are not code): {untagged}"


def test_the_blocks_not_run_are_few_and_each_says_why():
    skipped = [b for b in CODE if b.not_run]
    assert all(len(b.not_run) > 5 for b in skipped)
    assert len(skipped) < len(CODE)  # the harness runs something: a parser that finds nothing fails here


def _checkout(root: Path) -> Path:
    """A scratch folder that looks like the repository to the README's commands, with the user's inputs."""
    (root / "models").mkdir(parents=True)
    for path in (REPO / "models").iterdir():
        (root / "models" / path.name).symlink_to(path)  # a block that writes models/x.onnx writes it here
    for name in ("camera", "deploy", "training", "pyproject.toml", "README.md"):
        (root / name).symlink_to(REPO / name)
    cap = cv2.VideoCapture(str(SAMPLE_CLIP))
    frames = [cap.read()[1] for _ in range(48)][::12]  # four different photos of the clip
    cap.release()
    (root / "photos").mkdir()
    for n, frame in enumerate(frames):
        cv2.imwrite(str(root / "photos" / f"{n}.jpg"), frame)
    cv2.imwrite(str(root / "more.jpg"), frames[0])
    for label, names, picks in (("thumbs_up", "ac", frames[:2]), ("thumbs_down", "bd", frames[2:])):
        (root / "data" / label).mkdir(parents=True)
        for name, frame in zip(names, picks):
            cv2.imwrite(str(root / "data" / label / f"{name}.jpg"), frame)
    return root


@pytest.mark.parametrize("block", CODE, ids=[b.name for b in CODE])
def test_the_code_block_runs_as_written(block: Block, tmp_path):
    if block.not_run:
        pytest.skip(f"not run: {block.not_run}")
    cwd = _checkout(tmp_path / "edgevision")
    env = dict(HEADLESS, EDGEVISION_CACHE=str(tmp_path / "cache"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{HEADLESS.get('PATH', '')}")  # this venv's edgevision
    if RUN[block.lang] == "python":
        script = tmp_path / "block.py"
        script.write_text(block.code)
        command = [sys.executable, str(script)]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, f"{block.name}:\n{block.code}\n{proc.stderr}"

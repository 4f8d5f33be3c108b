"""ruff, with target-version py310 (JetPack 6's Python), over the whole project."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

RUFF = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")


@pytest.mark.skipif(not Path(RUFF).exists(), reason="ruff is not installed (it comes with the 'dev' extra)")
def test_ruff_finds_nothing():
    proc = subprocess.run([RUFF, "check", "--output-format", "concise", str(REPO)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runtime_code_parses_as_python_3_10():
    import ast

    for folder in ("camera", "deploy"):
        for path in (REPO / folder).rglob("*.py"):
            ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))

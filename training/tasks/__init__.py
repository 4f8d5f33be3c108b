"""The training side's task registry: one module per task kind, the one home of its trainer
(reader glue, head, loss, fit) and of what export and the model card need from it. The runtime
side's modules are deploy/tasks/; a new task adds one module on each side and a line in each
registry.

Every module provides::

    KIND: str
    train(config, log) -> Path                  # a run folder (training/runfolder.py)
    OUTPUTS: tuple[str, ...]                    # the ONNX output names, in the runtime's order
    agreement(expected, got, spec) -> (share, what)   # export parity beyond max |difference|
    quality(results, known, spec) -> dict       # onnx_* metrics on the run's validation rows
    model_text(config), output_text(spec), card_section(metrics, report)
    check_text(out, data, config)               # optional: the card's check line (default: predict on val/)

Modules are imported when asked for: each pulls in TensorFlow.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ...deploy.spec import TASK_KINDS

MODULES = {"classify": "classify", "keypoints": "keypoints", "segment": "segment", "detect": "detect"}
if set(MODULES) != set(TASK_KINDS):
    raise ImportError(f"training task modules {sorted(MODULES)} do not match the spec's kinds {sorted(TASK_KINDS)}")


def task(kind: str) -> ModuleType:
    """The training module of a task kind (imports TensorFlow)."""
    if kind not in MODULES:
        raise ValueError(f"unknown task kind {kind!r}; known: {', '.join(MODULES)}")
    return importlib.import_module(f"{__name__}.{MODULES[kind]}")

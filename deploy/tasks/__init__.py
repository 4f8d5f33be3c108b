"""The runtime's task registry: one module per task kind, each the one home of its result type
(with ``to_json``, ``draw`` and ``summary``), its ``decode`` from model outputs, its terminal
``summary`` line and its ``HEADLINE`` metric. The training side has its own per-task modules
(training/tasks/); a new task adds one module on each side and a line in each registry.

Every task module provides::

    KIND: str                       # the spec's kind, e.g. "detect"
    HEADLINE: Headline              # the metric that ranks models of this kind
    decode(outputs, spec, placements, **options) -> list[Result]
    summary(result_json: dict) -> str
    output_names(names) -> names    # optional: the order decode reads the outputs in

Models made elsewhere (``spec.head`` other than ``edgevision``) are decoded by their head's module
(yolo.py), into the same result types or into the result-only kinds ``instances`` and ``poses``.
"""

from __future__ import annotations

from types import ModuleType

from ..spec import TASK_KINDS, Headline
from . import chain, classify, detect, instances, keypoints, poses, segment, yolo

# kind -> its module. "chain" (a detector + a classifier), "instances" and "poses" (boxes with a mask or points
# each, from a YOLO model) are result kinds, not model kinds.
RESULT_KINDS = ("chain", "instances", "poses")
REGISTRY: dict[str, ModuleType] = {m.KIND: m for m in (classify, keypoints, segment, detect, chain, instances, poses)}
HEADS: dict[str, ModuleType] = {"yolo": yolo, "yolo-end2end": yolo}  # spec.head -> the module that decodes it
if set(REGISTRY) - set(RESULT_KINDS) != set(TASK_KINDS):  # the spec's kinds and these modules must agree
    raise ImportError(f"task modules {sorted(REGISTRY)} do not match the spec's kinds {sorted(TASK_KINDS)}")


def task(kind: str) -> ModuleType:
    """The module of a task kind (or of the chain's results)."""
    if kind not in REGISTRY:
        raise ValueError(f"unknown task kind {kind!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[kind]


def decode(outputs: list, spec, placements: list, **options: float | None) -> list:
    """Model outputs for a batch -> one typed result per frame, by the spec's kind (or its head's layout)."""
    if spec.head in HEADS:
        return HEADS[spec.head].decode(outputs, spec, placements, **options)
    return task(spec.kind).decode(outputs, spec, placements, **options)


def output_names(kind: str, names: list[str], head: str = "edgevision") -> list[str]:
    if head in HEADS:
        return names
    module = task(kind)
    return module.output_names(names) if hasattr(module, "output_names") else names


def summary_text(result: dict) -> str:
    """A short human line for a result's JSON (any task, the chain included)."""
    kind = result.get("task")
    return task(kind).summary(result) if kind in REGISTRY else str(result)


def headline(kind: str) -> Headline:
    return task(kind).HEADLINE

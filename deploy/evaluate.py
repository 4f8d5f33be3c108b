"""``edgevision eval``: a detection model (optionally chained) on a labelled box folder.

Prints the metrics as one JSON object: AP at IoU 0.5 (VOC all-point) per class and their mean,
recall and precision at the model's score threshold, CPU time per image; with ``--then``, also
how often the most confident box's answer equals the image's folder name (e.g. a finger count).
The runtime path is the one ``run`` uses; no TensorFlow.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..camera.sources import read_image
from .errors import UserError


def evaluate_boxes(runner, data: Path, rename: tuple[str, ...], operating_score: float) -> dict:
    """``runner`` must keep low scores (0.01) so that the whole precision-recall curve is seen;
    recall, precision and the chain's answers count boxes scoring at least ``operating_score``."""
    from ..training.detection import detection_metrics, read_box_folder

    spec = runner.spec
    if spec.kind != "detect":
        raise UserError(f"eval scores detection models; {runner.path.name} is a {spec.kind} model "
                        "(for a classifier, 'edgevision predict' prints the accuracy by folder name)")
    for rule in rename:
        if rule.rpartition(":")[2] not in spec.labels or not rule.rpartition(":")[0]:
            raise UserError(f"--rename takes PATTERN:CLASS with a class of the model ({', '.join(spec.labels)}), "
                            f"got {rule!r}")
    samples, stats = read_box_folder(Path(data), spec.labels, rename)
    results, seconds = [], []
    for s in samples:
        image = read_image(s.path)
        if image is None:
            raise UserError(f"cannot read {s.path}")
        t0 = time.perf_counter()
        results.append(runner.infer([image])[0][0])
        seconds.append(time.perf_counter() - t0)
    chained = hasattr(runner, "then")
    detections = [r.detections if chained else r for r in results]
    m = detection_metrics(detections, samples, spec.labels, operating_score=operating_score)
    out = {"model": str(runner.path), "data": str(data), **m, **stats,
           "ms_per_image_mean": round(1e3 * sum(seconds) / len(seconds), 2)}
    if chained:
        labels = set(runner.then.spec.labels)
        scored = [(r, s) for r, s in zip(results, samples) if s.path.parent.name in labels]

        def found(r) -> bool:  # a box as 'run' would show it
            return bool(r.then) and float(r.detections.score[0]) >= operating_score

        right = sum(int(found(r) and r.then[0].label == s.path.parent.name) for r, s in scored)
        out["then"] = str(runner.then.path)
        out["chain_accuracy"] = right / len(scored) if scored else None
        out["chain_images"] = len(scored)
        out["no_box_images"] = sum(int(not found(r)) for r, _ in scored)
    return out

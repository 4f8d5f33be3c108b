"""``edgevision eval``: a detection model (optionally chained) on a labelled box folder.

Prints the metrics as one JSON object: AP at IoU 0.5 (VOC all-point) per class and their mean,
recall and precision at the model's score threshold, CPU time per image; with ``--then``, also
how often the most confident box's answer equals the image's folder name (e.g. a finger count).
The runtime path is the one ``run`` uses; no TensorFlow.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..deploy.images import read_image
from .errors import UserError


def evaluate_boxes(runner, data: Path, rename: tuple[str, ...], operating_score: float, chain=None) -> dict:
    """``runner`` (a detector) must keep low scores (0.01) so that the whole precision-recall curve
    is seen; recall and precision count boxes scoring at least ``operating_score``. ``chain``, a
    ChainRunner whose detector uses ``operating_score`` as 'run' does, gives the chained answers
    and the time per image of the whole chain (detector, crops, classifier)."""
    from .boxdata import is_rename_rule, read_box_folder
    from .tasks.detect import detection_metrics

    spec = runner.spec
    if spec.kind != "detect":
        raise UserError(f"eval scores detection models; {runner.path.name} is a {spec.kind} model "
                        "(for a classifier, 'edgevision predict' prints the accuracy by folder name)")
    for rule in rename:
        if not is_rename_rule(rule, spec.labels):
            raise UserError(f"--rename takes PATTERN:CLASS with a class of the model ({', '.join(spec.labels)}), "
                            f"got {rule!r}")
    samples, stats = read_box_folder(Path(data), spec.labels, rename)
    detections, answers, seconds = [], [], []
    for s in samples:
        image = read_image(s.path)
        if image is None:
            raise UserError(f"cannot read {s.path}")
        t0 = time.perf_counter()
        detections.append(runner.infer([image])[0][0])
        t1 = time.perf_counter()
        if chain is not None:
            answers.append(chain.infer([image])[0][0])
        seconds.append(time.perf_counter() - t1 if chain is not None else t1 - t0)
    m = detection_metrics(detections, samples, spec.labels, operating_score=operating_score)
    out = {"model": str(runner.path), "data": str(data), **m, **stats,
           "ms_per_image_mean": round(1e3 * sum(seconds) / len(seconds), 2)}
    if chain is not None:
        labels = set(chain.then.spec.labels)
        scored = [(r, s) for r, s in zip(answers, samples) if s.path.parent.name in labels]
        right = sum(int(r.top_label() == s.path.parent.name) for r, s in scored)
        out["then"] = str(chain.then.path)
        out["chain_accuracy"] = right / len(scored) if scored else None
        out["chain_images"] = len(scored)
        out["no_box_images"] = sum(int(r.top_label() is None) for r, _ in scored)
    return out

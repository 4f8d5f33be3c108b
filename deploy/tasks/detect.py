"""Task ``detect``: boxes with labels and scores. Result type, decode (threshold + class-aware NMS),
draw, summary, and the Pascal VOC AP50 metric."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from ..boxdata import BoxSample
from ..draw import color_for, frame_scale, put_label
from ..ops import Placement
from ..spec import Headline

KIND = "detect"
HEADLINE = Headline("map50", "AP50", higher_is_better=True)


@dataclass(frozen=True)
class Detections:
    labels: tuple[str, ...]
    xyxy: np.ndarray  # (n, 4) float32, source-image pixels
    score: np.ndarray  # (n,) float32
    label_id: np.ndarray  # (n,) int64
    track_id: np.ndarray | None = None  # (n,) int64 with --track: the same object keeps its id (deploy/track.py)
    kind: ClassVar[str] = KIND

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (n, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        label_id = np.asarray(self.label_id, dtype=np.int64).reshape(-1)
        if score.shape != (n,) or label_id.shape != (n,):
            raise ValueError(f"score and label_id must have shape ({n},), got {score.shape} and {label_id.shape}")
        if n and (label_id.min() < 0 or label_id.max() >= len(self.labels)):
            raise ValueError(f"label_id must lie in 0..{len(self.labels) - 1}, got {label_id.tolist()}")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "label_id", label_id)
        if self.track_id is not None:
            track_id = np.asarray(self.track_id, dtype=np.int64).reshape(-1)
            if track_id.shape != (n,):
                raise ValueError(f"track_id must have shape ({n},), got {track_id.shape}")
            object.__setattr__(self, "track_id", track_id)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def to_dict(self) -> dict:
        out = {
            "task": KIND,
            "detections": [
                {
                    "label": self.labels[int(c)],
                    "score": round(float(s), 6),
                    "xyxy": [round(float(v), 2) for v in box],
                }
                for box, s, c in zip(self.xyxy, self.score, self.label_id)
            ],
        }
        if self.track_id is not None:
            for item, track in zip(out["detections"], self.track_id):
                item["track_id"] = int(track)
        return out

    def draw(self, frame: np.ndarray, texts: list[str] | None = None, text_scale: float = 0.5) -> None:
        """Boxes with label and score; ``texts`` overrides the text per box (e.g. a chained result)."""
        s = frame_scale(frame)
        for i, (box, score, cls) in enumerate(zip(self.xyxy, self.score, self.label_id)):
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            color = color_for(int(cls))
            cv2.rectangle(frame, (x0, y0), (x1, y1), color, max(1, int(2 * s)), cv2.LINE_AA)
            text = texts[i] if texts else f"{self.labels[int(cls)]} {score:.2f}"
            if self.track_id is not None:
                text = f"#{self.track_id[i]} {text}"
            put_label(frame, text, (x0 + 2, max(int(32 * text_scale * s), y0 - 4)), color, text_scale * s)


def output_names(names: list[str]) -> list[str]:
    """The order the decoder reads outputs in: boxes, then scores (when the model names them)."""
    return ["boxes", "scores"] if {"boxes", "scores"} <= set(names) else names


def summary(result: dict) -> str:
    return f"{len(result['detections'])} found: " + ", ".join(
        f"{track_text(d)}{d['label']} {d['score']:.2f}" for d in result["detections"][:5]
    )


def track_text(detection: dict) -> str:
    """'#3 ' for a detection with a track id (--track), else ''."""
    return f"#{detection['track_id']} " if "track_id" in detection else ""


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) xyxy box against (n, 4) boxes."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_out: int = 300) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size and len(keep) < max_out:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i], boxes[order[1:]])
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    offset = classes.astype(np.float32)[:, None] * (float(boxes.max()) + 1.0)
    return nms(boxes + offset, scores, iou_threshold)


def decode(
    outputs: list[np.ndarray],
    spec,
    placements: list[Placement],
    score_threshold: float | None = None,
    iou_threshold: float | None = None,
) -> list[Detections]:
    if len(outputs) != 2:
        raise ValueError(f"a detector must have 2 outputs (boxes, scores), got {len(outputs)}")
    boxes_all, scores_all = (np.asarray(o, dtype=np.float32) for o in outputs)
    c = len(spec.labels)
    if boxes_all.ndim != 3 or boxes_all.shape[2] != 4 or scores_all.shape != (*boxes_all.shape[:2], c):
        raise ValueError(
            f"a detector must output boxes (n, a, 4) and scores (n, a, {c}), got {boxes_all.shape}, {scores_all.shape}"
        )
    score_threshold = spec.score_threshold if score_threshold is None else score_threshold
    iou_threshold = spec.iou_threshold if iou_threshold is None else iou_threshold
    ih, iw = spec.input_hw
    results = []
    for boxes, scores, placement in zip(boxes_all, scores_all, placements):
        label_id = scores.argmax(axis=1)
        score = scores[np.arange(scores.shape[0]), label_id]
        mask = score >= score_threshold
        boxes, score, label_id = boxes[mask], score[mask], label_id[mask]
        keep = batched_nms(boxes, score, label_id, iou_threshold)
        xyxy_input = boxes[keep].reshape(-1, 2, 2) * np.float32((iw, ih))  # (n, 4) -> (n, 2 corners, xy)
        xyxy = placement.to_source(xyxy_input).reshape(-1, 4)
        sh, sw = placement.source_hw
        xyxy = np.clip(xyxy, 0, np.float32((sw, sh, sw, sh)))
        results.append(Detections(spec.labels, xyxy, score[keep], label_id[keep]))
    return results


# --- metric --------------------------------------------------------------------------------------


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC 2010+ all-point interpolation: area under the precision envelope."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def detection_metrics(preds: list, truths: list[BoxSample], labels: tuple[str, ...], iou: float = 0.5,
                      operating_score: float = 0.25) -> dict:
    """AP at ``iou`` per class (VOC: greedy by score, each true box matched once, 'difficult' ones
    neither count nor penalise) and their mean; recall and precision of the detections scoring at
    least ``operating_score`` (the runtime's default threshold). ``preds``: Detections per image."""
    per_class, ops_tp, ops_fp, n_true = {}, 0, 0, 0
    for c, name in enumerate(labels):
        scores, hits, positives = [], [], 0
        for det, truth in zip(preds, truths):
            t = truth.label == c
            gt, hard = truth.xyxy[t], truth.difficult[t]
            positives += int((~hard).sum())
            mine = det.label_id == c
            boxes, score = det.xyxy[mine], det.score[mine]
            used = np.zeros(len(gt), bool)
            for i in np.argsort(-score, kind="stable"):
                ious = box_iou(boxes[i], gt) if len(gt) else np.zeros(0)
                j = int(ious.argmax()) if len(gt) else -1
                if j >= 0 and ious[j] >= iou:
                    if hard[j]:
                        continue  # neither a hit nor a miss
                    hit = not used[j]
                    used[j] = True
                else:
                    hit = False
                scores.append(score[i])
                hits.append(hit)
        order = np.argsort(-np.asarray(scores), kind="stable")
        tp = np.cumsum(np.asarray(hits, bool)[order])
        fp = np.cumsum(~np.asarray(hits, bool)[order])
        rec = tp / max(positives, 1)
        prec = tp / np.maximum(tp + fp, 1)
        above = np.asarray(scores)[order] >= operating_score if scores else np.zeros(0, bool)
        k = int(above.sum())
        op_tp = int(tp[k - 1]) if k else 0
        ops_tp, ops_fp, n_true = ops_tp + op_tp, ops_fp + (k - op_tp), n_true + positives
        per_class[name] = {
            "ap50": average_precision(rec, prec) if positives else float("nan"),
            "true_boxes": positives,
            "max_recall": float(rec[-1]) if len(rec) else 0.0,
        }
    aps = [v["ap50"] for v in per_class.values() if v["true_boxes"]]
    return {
        "map50": float(np.mean(aps)) if aps else float("nan"),
        "per_class": per_class,
        "recall": ops_tp / max(n_true, 1),
        "precision": ops_tp / max(ops_tp + ops_fp, 1),
        "operating_score": operating_score,
        "true_boxes": n_true,
        "images": len(truths),
    }

"""Ultralytics YOLO ONNX exports, run as they are: their spec read from the ``metadata_props`` Ultralytics'
exporter writes (``task``, ``names``, ``imgsz``, ``kpt_shape``, ``end2end``, ``args``: each a Python literal,
``str(value)``), and the decode of their output layouts into edgevision's results in source pixels:

- detect: ``(n, 4 + nc, anchors)``, boxes as centre x, centre y, width, height in input pixels and one score per
  class; the runner thresholds and runs class-aware NMS -> Detections.
- segment: the same with 32 mask coefficients after the scores, ``(n, 4 + nc + 32, anchors)``, and the mask
  prototypes ``(n, 32, h / 4, w / 4)`` -> Instances (a mask per box).
- pose: ``(n, 4 + nc + k * d, anchors)``, d = 2 (x, y) or 3 (x, y, visibility) in input pixels -> Poses.
- classify: ``(n, nc)`` probabilities -> Classification (the classify task's own decode).
- end-to-end (YOLOv10, YOLO26, or exported with ``nms=True``): ``(n, max_det, 6 + extra)``, rows of x0, y0,
  x1, y1, score, class id, then the same extras; boxes already chosen, so no NMS.

Input: RGB, 0..1 (the runner divides by 255), NCHW, letterboxed with grey 114 like Ultralytics' own predict;
classifiers get Ultralytics' resize-and-centre-crop.
"""

from __future__ import annotations

import ast

import cv2
import numpy as np

from ..ops import Placement
from ..spec import SpecError, TaskSpec
from .classify import decode as decode_classify
from .detect import Detections, batched_nms
from .instances import Instances
from .poses import COCO_POINTS, Poses

TASKS = {"detect": "detect", "segment": "segment", "pose": "keypoints", "classify": "classify"}  # theirs -> ours
MASK_DIM = 32  # mask coefficients per box (Ultralytics' Segment head: nm=32)
MAX_DET = 300  # Ultralytics' default max_det
IOU = 0.7  # Ultralytics' predict default


def _literal(meta: dict[str, str], key: str, default: object = None) -> object:
    if key not in meta:
        return default
    try:
        return ast.literal_eval(meta[key])
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise SpecError(f"its Ultralytics metadata {key!r} is not a Python literal: {meta[key][:80]!r}") from exc


def is_ultralytics(meta: dict[str, str]) -> bool:
    return {"task", "names", "imgsz"} <= set(meta)


def spec_from_metadata(meta: dict[str, str]) -> TaskSpec:
    """The spec of an Ultralytics export, from its metadata; SpecError says what does not fit."""
    task = meta["task"]
    if task not in TASKS:
        raise SpecError(f"it is an Ultralytics {task!r} model; edgevision runs {', '.join(TASKS)}")
    names = _literal(meta, "names")
    if not isinstance(names, dict) or sorted(names) != list(range(len(names))):
        raise SpecError(f"its Ultralytics 'names' must map 0..n-1 to class names, got {meta['names'][:80]!r}")
    imgsz = _literal(meta, "imgsz")
    imgsz = [imgsz, imgsz] if isinstance(imgsz, int) else imgsz
    if not (isinstance(imgsz, (list, tuple)) and len(imgsz) == 2 and all(isinstance(v, int) for v in imgsz)):
        raise SpecError(f"its Ultralytics 'imgsz' must be [height, width], got {meta['imgsz'][:80]!r}")
    channels = _literal(meta, "channels", 3)
    if channels != 3:
        raise SpecError(f"it takes {channels}-channel images; edgevision feeds colour (3-channel) frames")
    args = _literal(meta, "args", {}) or {}
    end2end = bool(_literal(meta, "end2end", False)) or bool(isinstance(args, dict) and args.get("nms"))
    points: tuple[str, ...] = ()
    if task == "pose":
        shape = _literal(meta, "kpt_shape")
        if not (isinstance(shape, (list, tuple)) and len(shape) == 2 and shape[1] in (2, 3) and shape[0] > 0):
            raise SpecError(f"its Ultralytics 'kpt_shape' must be [points, 2 or 3], got {meta.get('kpt_shape')!r}")
        given = _literal(meta, "kpt_names")
        given = next(iter(given.values()), None) if isinstance(given, dict) else given  # {class: [names]}
        if isinstance(given, (list, tuple)) and len(given) == shape[0]:
            points = tuple(str(v) for v in given)
        else:
            points = COCO_POINTS if shape[0] == len(COCO_POINTS) else tuple(f"p{i}" for i in range(shape[0]))
    return TaskSpec(TASKS[task], (imgsz[0], imgsz[1]), tuple(str(names[i]) for i in range(len(names))),
                    color="RGB", std=(255.0, 255.0, 255.0), resize="crop" if task == "classify" else "letterbox",
                    score_threshold=0.25, iou_threshold=IOU, layout="NCHW",
                    head="yolo-end2end" if end2end and task != "classify" else "yolo", keypoint_names=points)


def _extra(spec: TaskSpec, point_dim: int = 3) -> int:
    """Values per box after the class scores: mask coefficients, or the points' values."""
    if spec.kind == "segment":
        return MASK_DIM
    if spec.kind == "keypoints":
        return len(spec.keypoint_names) * point_dim
    return 0


def _layout_error(spec: TaskSpec, found: list[tuple[int, ...]]) -> ValueError:
    nc, extra = len(spec.labels), _extra(spec)
    task = {v: k for k, v in TASKS.items()}[spec.kind]
    what = {"segment": f" + {MASK_DIM} mask coefficients", "keypoints": f" + {len(spec.keypoint_names)} points x 2|3",
            "detect": ""}.get(spec.kind, "")
    wanted = (f"(n, max_det, 6{f' + {extra}' if extra else ''}) rows of x0, y0, x1, y1, score, class"
              if spec.head == "yolo-end2end" else f"(n, 4 + {nc} classes{what} = {4 + nc + extra}, anchors)")
    if spec.kind == "segment":
        wanted += f" and mask prototypes (n, {MASK_DIM}, h, w)"
    return ValueError(f"an Ultralytics {task} model with {nc} classes outputs {wanted}; this one outputs "
                      + ", ".join(str(s) for s in found))


def _candidates(out: np.ndarray, spec: TaskSpec, extra: int, score_threshold: float, iou_threshold: float
                ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per image: the boxes kept (m, 4) xyxy input pixels, their scores (m,), class ids (m,), extras (m, e)."""
    nc = len(spec.labels)
    kept = []
    for rows in out:
        if spec.head == "yolo-end2end":  # (max_det, 6 + e): chosen in the graph
            score, cls = rows[:, 4], rows[:, 5].round().astype(np.int64)
            ok = (score >= score_threshold) & (cls >= 0) & (cls < nc)
            kept.append((rows[ok, :4], score[ok], cls[ok], rows[ok, 6:]))
            continue
        rows = rows.T  # (4 + nc + e, anchors) -> (anchors, 4 + nc + e)
        scores = rows[:, 4 : 4 + nc]
        cls = scores.argmax(axis=1)
        score = scores[np.arange(len(rows)), cls]
        ok = score >= score_threshold
        rows, score, cls = rows[ok], score[ok], cls[ok]
        cxcy, wh = rows[:, :2], rows[:, 2:4]
        xyxy = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1)
        keep = batched_nms(xyxy, score, cls, iou_threshold)[:MAX_DET]
        kept.append((xyxy[keep], score[keep], cls[keep], rows[keep, 4 + nc : 4 + nc + extra]))
    return kept


def _to_source(xyxy_input: np.ndarray, placement: Placement) -> np.ndarray:
    xyxy = placement.to_source(xyxy_input.reshape(-1, 2, 2)).reshape(-1, 4)  # (m, 4) -> (m, 2 corners, xy)
    sh, sw = placement.source_hw
    return np.clip(xyxy, 0, np.float32((sw, sh, sw, sh)))


def masks_in_source(coeffs: np.ndarray, protos: np.ndarray, boxes: np.ndarray, placement: Placement,
                    input_hw: tuple[int, int]) -> np.ndarray:
    """(m, 32) coefficients and (32, ph, pw) prototypes -> (m, h, w) bool masks in source pixels, each cut to its
    box (source pixels, (m, 4)) as Ultralytics cuts them. The mask logits are sampled bilinearly straight from the
    prototype grid into each box's window of the source frame (pixel centres matched), and kept where above 0
    (a sigmoid above 0.5)."""
    sh, sw = placement.source_hw
    ph, pw = protos.shape[1:]
    logits = (coeffs @ protos.reshape(len(protos), -1)).reshape(-1, ph, pw).astype(np.float32)  # (m, ph, pw)
    kx, ky = pw / input_hw[1], ph / input_hw[0]  # prototype cells per input pixel
    (gx, gy), (px, py) = placement.scale_xy, placement.pad_xy
    masks = np.zeros((len(coeffs), sh, sw), bool)
    for i, box in enumerate(boxes):
        x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
        x1, y1 = min(sw, int(np.ceil(box[2]))), min(sh, int(np.ceil(box[3])))
        if x1 <= x0 or y1 <= y0:
            continue
        # source pixel centre x + 0.5 -> input (x + 0.5) * gx + px -> prototype cell centre coordinate - 0.5
        warp = np.float32([[gx * kx, 0, ((x0 + 0.5) * gx + px) * kx - 0.5],
                           [0, gy * ky, ((y0 + 0.5) * gy + py) * ky - 0.5]])
        window = cv2.warpAffine(logits[i], warp, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        inside = window > 0
        # cut to the box itself (its edges may fall inside the window's first and last pixels)
        xs, ys = np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5
        inside &= ((ys >= box[1]) & (ys <= box[3]))[:, None] & ((xs >= box[0]) & (xs <= box[2]))[None, :]
        masks[i, y0:y1, x0:x1] = inside
    return masks


def decode(outputs: list[np.ndarray], spec: TaskSpec, placements: list[Placement],
           score_threshold: float | None = None, iou_threshold: float | None = None) -> list:
    """A YOLO model's outputs for a batch -> one result per frame (Detections, Instances, Poses or
    Classification); a ValueError that says what was expected and what came when the layout is another."""
    outputs = [np.asarray(o, dtype=np.float32) for o in outputs]
    found = [tuple(o.shape) for o in outputs]
    if spec.kind == "classify":
        return decode_classify(outputs, spec, placements)
    heads = [o for o in outputs if o.ndim == 3]
    protos = [o for o in outputs if o.ndim == 4]
    if len(heads) != 1 or len(protos) != (spec.kind == "segment"):
        raise _layout_error(spec, found)
    head = heads[0]
    nc, point_dim = len(spec.labels), 3
    if spec.kind == "keypoints":  # 2 or 3 values per point, read from the output's width
        width = head.shape[2] - 6 if spec.head == "yolo-end2end" else head.shape[1] - 4 - nc
        point_dim = 2 if width == 2 * len(spec.keypoint_names) else 3
    extra = _extra(spec, point_dim)
    if head.shape[2 if spec.head == "yolo-end2end" else 1] != (6 if spec.head == "yolo-end2end" else 4 + nc) + extra:
        raise _layout_error(spec, found)
    if protos and (protos[0].shape[1] != MASK_DIM or protos[0].shape[0] != head.shape[0]):
        raise _layout_error(spec, found)
    score_threshold = spec.score_threshold if score_threshold is None else score_threshold
    iou_threshold = spec.iou_threshold if iou_threshold is None else iou_threshold
    results = []
    for i, ((xyxy, score, cls, values), placement) in enumerate(
            zip(_candidates(head, spec, extra, score_threshold, iou_threshold), placements)):
        boxes = _to_source(xyxy, placement)
        det = Detections(spec.labels, boxes, score, cls)
        if spec.kind == "detect":
            results.append(det)
        elif spec.kind == "segment":
            masks = masks_in_source(values, protos[0][i], boxes, placement, spec.input_hw)
            kept = masks.any(axis=(1, 2))  # a box whose mask is empty is dropped, as Ultralytics' predict drops it
            det = Detections(spec.labels, boxes[kept], score[kept], cls[kept])
            results.append(Instances(det, masks[kept]))
        else:
            points = values.reshape(len(det), len(spec.keypoint_names), point_dim)  # (m, k * d) -> (m, k, d)
            results.append(Poses(det, spec.keypoint_names, placement.to_source(points[..., :2]),
                                 points[..., 2] if point_dim == 3 else None))
    return results

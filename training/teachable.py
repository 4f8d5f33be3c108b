"""Teachable Machine's image model, converted: its Keras export (``keras_model.h5`` + ``labels.txt``; a
MobileNet at 224x224 that expects pixels scaled to -1..1 and ends in a softmax) becomes an edgevision ONNX
classifier through the kit's own export (tf2onnx, then the Keras-vs-onnxruntime parity check), with the
scaling inside the graph, as every exported model has it. This module imports TensorFlow."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import onnx

from ..deploy.errors import UserError
from ..deploy.images import check_new_output, publish, temp_beside
from ..deploy.spec import SpecError, TaskSpec
from .export import convert, parity_check

MODEL_FILE, LABELS_FILE = "keras_model.h5", "labels.txt"
PARITY_FRAMES = 8  # seeded synthetic frames: a Teachable Machine export comes without its photos


def read_labels(path: Path) -> tuple[str, ...]:
    """labels.txt: one class a line, Teachable Machine's '0 Class 1' (its index first) or plain names."""
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the labels file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    numbered = [re.fullmatch(r"(\d+)\s+(.+)", line) for line in lines]
    if lines and all(m and int(m.group(1)) == i for i, m in enumerate(numbered)):
        return tuple(m.group(2).strip() for m in numbered)
    return tuple(lines)


class _DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """Teachable Machine's files were written by tf.keras 2, whose DepthwiseConv2D config has 'groups': 1;
    Keras 3 refuses that key, though it changes nothing for a depthwise convolution."""

    def __init__(self, *args, groups: int = 1, **kwargs) -> None:
        if groups != 1:
            raise ValueError(f"a DepthwiseConv2D with groups={groups} is not a Teachable Machine layer")
        super().__init__(*args, **kwargs)


def load_teachable(path: Path) -> keras.Model:
    try:
        return keras.models.load_model(path, compile=False, custom_objects={"DepthwiseConv2D": _DepthwiseConv2D})
    except (OSError, TypeError, ValueError, KeyError) as exc:
        raise UserError(f"cannot load {path} as a Keras model: {str(exc).strip().splitlines()[0][:200]}") from exc


def with_scaling(model: keras.Model) -> keras.Model:
    """``model`` behind the -1..1 scaling Teachable Machine's own code does outside it (x / 127.5 - 1)."""
    h, w = model.input_shape[1:3]
    image = keras.Input((h, w, 3), name="image")
    return keras.Model(image, model(keras.layers.Rescaling(1 / 127.5, offset=-1)(image)), name="teachable")


def parity_frames(count: int = PARITY_FRAMES, seed: int = 0) -> list[np.ndarray]:
    """Seeded frames for the parity check: noise and smooth colour ramps, 240x320."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, 320, dtype=np.float32)[None, :, None] * rng.uniform(0.2, 1, (count, 1, 1, 3))
    frames = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) if i % 2 else
              np.broadcast_to(ramp[i], (240, 320, 3)).astype(np.uint8) for i in range(count)]
    return [np.ascontiguousarray(f) for f in frames]


def convert_teachable(source: Path, out: Path, labels: tuple[str, ...] | None = None, atol: float = 1e-3,
                      log=print) -> TaskSpec:
    """``source`` (keras_model.h5, or the folder holding it and labels.txt) -> ``out``, an edgevision
    classifier, written only when onnxruntime agrees with Keras on the parity frames."""
    source, out = Path(source), Path(out)
    h5 = source / MODEL_FILE if source.is_dir() else source
    if not h5.is_file():
        raise UserError(f"{h5} not found: give Teachable Machine's {MODEL_FILE} or the folder it is in")
    if out.suffix != ".onnx":
        raise UserError(f"--out must end in .onnx, got {out}")
    check_new_output(out, overwrite=False)
    if labels is None:
        labels_path = h5.parent / LABELS_FILE
        if not labels_path.is_file():
            raise UserError(f"{labels_path} not found: give the class names with --labels a,b or --labels FILE")
        labels = read_labels(labels_path)
    model = load_teachable(h5)
    if len(model.input_shape) != 4 or model.input_shape[3] != 3 or None in model.input_shape[1:3]:
        raise UserError(f"{h5} takes input {model.input_shape}; a Teachable Machine image model takes (n, h, w, 3)")
    classes = model.output_shape[-1]
    if len(model.output_shape) != 2 or classes != len(labels):
        raise UserError(f"{h5} outputs {model.output_shape} but there are {len(labels)} labels ({', '.join(labels)})")
    try:
        spec = TaskSpec("classify", tuple(model.input_shape[1:3]), labels)
    except SpecError as exc:
        raise UserError(f"cannot convert {h5}: {exc}") from exc
    scaled = with_scaling(model)
    log(f"converting {h5} ({len(labels)} classes, {spec.input_hw[1]}x{spec.input_hw[0]}) with the kit's export")
    with temp_beside(out) as tmp:
        onnx.save(convert(scaled, spec), tmp)
        report = parity_check(scaled, tmp, parity_frames(), atol, min_agreement=1.0)
        log(report.text())
        if not report.passed:
            raise UserError(f"{out} not written: {report.text()}")
        publish(tmp, out)
    log(f"wrote {out}")
    return spec

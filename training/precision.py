"""Precision variants of an exported model: INT8 (static QDQ) and FP16. Needs the ``onnx`` package.

- INT8: ``onnxruntime.quantization.quantize_static`` in QDQ format with symmetric, per-channel
  weights and symmetric activations, calibrated on the user's own images: the explicit
  quantisation TensorRT builds INT8 engines from. On a CPU such a file usually runs slower than
  float32 (the QDQ pairs are not fused there); it is meant for TensorRT.
- FP16: float16 weights and maths with float32 input and output (``keep_io_types``), for GPUs.
The spec in the metadata is carried over unchanged.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from ..deploy.errors import UserError
from ..deploy.onnxmeta import SOURCE_KEY, file_sha256
from ..deploy.ops import preprocess
from ..deploy.providers import captured_fds
from ..deploy.spec import SPEC_KEY, TaskSpec
from .card import headline

VARIANTS = ("int8", "fp16")


def variant_path(out: Path, variant: str) -> Path:
    """models/x.onnx -> models/x.int8.onnx"""
    return out.with_name(f"{out.stem}.{variant}{out.suffix}")


def _copy_spec(src: onnx.ModelProto, dst_path: Path, src_path: Path) -> None:
    """The variant carries the float32 model's spec and the SHA-256 of the file it was made from, so
    that bench (and people) can tell a variant that belongs to another model."""
    spec = {p.key: p.value for p in src.metadata_props}[SPEC_KEY]
    model = onnx.load(dst_path)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {SPEC_KEY: spec, SOURCE_KEY: file_sha256(src_path)})
    onnx.save(model, dst_path)


CALIB_METHODS = ("percentile", "minmax", "entropy")
CALIB_CHUNK = 4  # images per calibration step: bounds memory (see quantize_int8)


def quantize_int8(fp32: Path, out: Path, calib_frames: list[np.ndarray], spec: TaskSpec,
                  method: str = "percentile") -> int:
    """Static INT8 QDQ quantisation calibrated on ``calib_frames`` (BGR images of any size);
    returns how many were used (a multiple of the calibration chunk).

    Percentile calibration is the default: on the emotions model it kept 92.6% of 108 val images
    where MinMax and Entropy kept 91.7% (float32: 93.5%)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if method not in CALIB_METHODS:
        raise UserError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}, got {method!r}")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calib_frames:
        raise UserError("INT8 needs calibration images: give --calib DIR with photos like the ones it will see")

    # Histogram calibration (percentile, entropy) keeps every intermediate tensor of every image
    # until it is done: 200 images of the 224-pixel nose model ran this 24 GiB machine out of
    # memory. onnxruntime's strided calibration merges the histograms chunk by chunk instead.
    frames = calib_frames[: len(calib_frames) - len(calib_frames) % CALIB_CHUNK] or calib_frames[:1]
    chunk = min(CALIB_CHUNK, len(frames))

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.set_range(0, len(frames))

        def __len__(self) -> int:
            return len(frames)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.frames: Iterator[np.ndarray] = iter(frames[start_index:end_index])

        def get_next(self) -> dict | None:
            frame = next(self.frames, None)
            return None if frame is None else {"image": preprocess([frame], spec)[0]}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        with captured_fds():  # the quantizer prints its histogram settings: not the user's business
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared), str(out), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibStridedMinMax": chunk},
                calibrate_method={"percentile": CalibrationMethod.Percentile, "minmax": CalibrationMethod.MinMax,
                                  "entropy": CalibrationMethod.Entropy}[method],
            )
    _copy_spec(onnx.load(fp32), out, fp32)
    return len(frames)  # the calibration images used


def convert_fp16(fp32: Path, out: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    source = onnx.load(fp32)
    model = convert_float_to_float16(source, keep_io_types=True)
    onnx.save(model, out)
    _copy_spec(source, out, fp32)


def metric_loss(kind: str, fp32: dict, variant: dict) -> float:
    """How much worse the variant is in the task's metric (accuracy, NME or mean IoU); > 0 is worse."""
    key, _, higher_is_better = headline(kind)
    return fp32[key] - variant[key] if higher_is_better else variant[key] - fp32[key]


def metric_text(kind: str, evaluation: dict) -> str:
    key, name, _ = headline(kind)
    return f"{name} {evaluation[key]:.4f}"

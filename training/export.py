"""``edgevision export``: a training run -> an ONNX file with its spec inside, checked against Keras.

The graph is traced from a ``tf.function`` with one named input (``image``, NHWC float32 RGB
0..255) and converted by tf2onnx. Every export then runs Keras and onnxruntime on the same
real validation images, prepared by the runtime's own preprocessing, and refuses to write
the file when they disagree beyond the tolerance (largest absolute difference of the
outputs, and top-1 agreement). This module imports TensorFlow; the runtime never imports it.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from ..deploy.errors import UserError, interrupts_deferred
from ..deploy.images import check_new_output, publish, read_image, temp_beside
from ..deploy.ops import preprocess
from ..deploy.runner import Runner, RunnerOptions
from ..deploy.spec import SPEC_KEY, TaskSpec
from .card import write_card
from .fit import log_line
from .precision import VARIANTS, convert_fp16, metric_loss, metric_text, quantize_int8, variant_path
from .runfolder import check_failed_classes, load_run_files, read_spec, read_val_list
from .tasks import task

IR_VERSION = 8  # read by onnxruntime 1.11+ (JetPack 5's 1.16 included); onnx >= 1.20 would write 10+


@dataclass(frozen=True)
class ParityReport:
    images: int
    max_abs_diff: float
    agreement: float  # classify: same top-1 class; keypoints: points within 0.5 input pixel
    atol: float
    min_agreement: float
    agreement_kind: str = "top-1 agreement"

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol and self.agreement >= self.min_agreement

    def text(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        return (
            f"parity {verdict} on {self.images} validation images: max |keras - onnx| = {self.max_abs_diff:.2e} "
            f"(allowed {self.atol:.0e}), {self.agreement_kind} {self.agreement:.2%} (needed {self.min_agreement:.0%})"
        )


def convert(model, spec: TaskSpec, opset: int = 17, batch: int | None = None) -> onnx.ModelProto:
    """Keras model -> ONNX with one input 'image' (batch, h, w, 3) and the spec in its metadata."""
    signature = (tf.TensorSpec((batch, *spec.input_hw, 3), tf.float32, name="image"),)

    names = task(spec.kind).OUTPUTS  # named as the runner looks them up

    @tf.function(input_signature=signature)
    def serve(image):
        outputs = model(image, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return dict(zip(names, outputs))

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    if batch is None:  # name the symbolic batch dimension instead of tf2onnx's 'unk__123'
        for value in [*proto.graph.input, *proto.graph.output]:
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return stamped(proto, SPEC_KEY, spec)


def stamped(proto: onnx.ModelProto, key: str, spec) -> onnx.ModelProto:
    """A converted model made ours: an IR version onnxruntime on a Jetson reads, our producer name and
    ``spec`` as the only metadata (tf2onnx's own entries dropped), checked."""
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    proto.producer_name, proto.producer_version = "edgevision", "0.1"
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {key: spec.to_json()})
    onnx.checker.check_model(proto)
    return proto


def load_run_model(run_dir: Path) -> keras.Model:
    """The run's Keras model, with the custom layers and losses the task modules register."""
    from . import keypoint_model  # noqa: F401  (registers its custom layers)
    from .tasks import detect, segment  # noqa: F401  (register their custom layer and loss)

    path = Path(run_dir) / "model.keras"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a training run (no model.keras): train one with 'edgevision train'")
    try:
        return keras.models.load_model(path, compile=False)
    except (TypeError, ValueError) as exc:
        raise UserError(f"cannot load {path}: {str(exc).splitlines()[0][:200]}") from exc


def load_parity_images(pairs: list[tuple[Path, str]], limit: int) -> list[np.ndarray]:
    images = []
    for path, _ in pairs:
        image = read_image(path)
        if image is not None:
            images.append(image)
        if len(images) == limit:
            break
    if not images:
        raise UserError("none of the run's validation images could be read for the parity check")
    return images


def parity_check(
    model, onnx_path: Path, frames_bgr: list[np.ndarray], atol: float, min_agreement: float
) -> ParityReport:
    """Keras and onnxruntime on the same frames, both fed by the runtime's preprocessing."""
    runner = Runner(onnx_path, RunnerOptions(providers="cpu"))
    batch, _ = preprocess(frames_bgr, runner.spec)
    expected = model.predict(batch, batch_size=32, verbose=0)
    step = runner.fixed_batch or 32
    runs = [runner.session.run(runner.output_names, {runner.input_name: batch[i : i + step]})
            for i in range(0, len(batch), step)]
    expected = [np.asarray(o, np.float32) for o in (expected if isinstance(expected, (list, tuple)) else [expected])]
    got = [np.concatenate([np.asarray(r[i], np.float32) for r in runs]) for i in range(len(expected))]
    for e, g in zip(expected, got):
        if g.shape != e.shape:
            raise UserError(f"the ONNX output has shape {g.shape}, Keras gives {e.shape}")
    max_diff = max(float(np.abs(g - e).max()) for e, g in zip(expected, got))
    agreement, kind = task(runner.spec.kind).agreement(expected, got, runner.spec)
    return ParityReport(len(batch), max_diff, agreement, atol, min_agreement, kind)


def evaluate_onnx(onnx_path: Path, pairs: list[tuple[Path, list[str]]]) -> dict:
    """The task's metric for the ONNX model on the run's validation images, through the runtime
    (source pixels for points), plus CPU latency."""
    runner = Runner(onnx_path, RunnerOptions(providers="cpu", score_threshold=0.01))  # detect: the whole PR curve
    frames, results, known = [], [], []
    for path, info in pairs:
        image = read_image(path)
        if image is None:
            continue
        frames.append(image)
        results.append(runner(image))
        known.append(info)
    quality = task(runner.spec.kind).quality(results, known, runner.spec)
    total = len(results)
    one = [frames[0]]
    for _ in range(5):
        runner.infer(one)
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        runner.session.run(runner.output_names, {runner.input_name: preprocess(one, runner.spec)[0]})
        times.append((time.perf_counter() - t0) * 1e3)
    return {
        **quality,
        "onnx_images": total,
        "cpu_latency_ms_median": round(statistics.median(times), 2),
        "cpu_latency_ms_p95": round(float(np.percentile(times, 95)), 2),
    }


def export(
    run_dir: Path,
    out: Path,
    opset: int = 17,
    batch: int | None = None,
    atol: float = 1e-3,
    min_agreement: float = 1.0,
    parity_images: int = 64,
    overwrite: bool = False,
    log=None,
    variants: tuple[str, ...] = (),
    calib_dir: Path | None = None,
    calib_images: int = 200,
    max_loss: float = 0.01,
    calib_method: str = "percentile",
    force: bool = False,
) -> dict:
    """Convert, check parity, and only then write ``out``; then the precision ``variants`` asked for
    (int8, fp16), each kept only when it loses at most ``max_loss`` (of accuracy, NME, mean IoU or AP50).
    A run whose model never gets a class right on val is refused unless ``force`` (the card then says so)."""
    log = log or log_line
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir} (training prints its run folder at the end)")
    if not 13 <= opset <= 21:
        raise UserError(f"--opset must be within 13..21 (17 is the default; 15 for TensorRT 8.5), got {opset}")
    if out.suffix != ".onnx":
        raise UserError(f"--out must end in .onnx, got {out}")
    for path in (out, out.with_suffix(".md"), *(variant_path(out, v).with_suffix(s) for v in variants
                                                  for s in (".onnx", ".md"))):
        check_new_output(path, overwrite)
    spec = read_spec(run_dir)
    if not (run_dir / "metrics.json").is_file():
        raise UserError(f"{run_dir} has no metrics.json: it is not a complete training run")
    failed = check_failed_classes(spec.kind, json.loads((run_dir / "metrics.json").read_text()), force, run_dir,
                                  out, log)
    model = load_run_model(run_dir)
    pairs = read_val_list(run_dir)
    frames = load_parity_images(pairs, parity_images)
    t0 = time.perf_counter()
    with interrupts_deferred(log, "the conversion"):  # said inside: a Ctrl-C after this line waits for the step
        log(f"converting {run_dir.name} with tf2onnx (opset {opset})")
        proto = convert(model, spec, opset=opset, batch=batch)
    log(f"converted with tf2onnx {tf2onnx.__version__}, opset {opset}, in {time.perf_counter() - t0:.1f} s")
    with temp_beside(out) as tmp:
        onnx.save(proto, tmp)
        with interrupts_deferred(log, "the parity check"):
            report = parity_check(model, tmp, frames, atol, min_agreement)
        log(report.text())
        if not report.passed:
            raise UserError(f"export refused, {out} not written: {report.text()}")
        evaluation = evaluate_onnx(tmp, pairs)
        publish(tmp, out)
    result = {
        "file": str(out),
        "size_bytes": out.stat().st_size,
        "opset": opset,
        "batch": batch or "dynamic",
        "parity": {"images": report.images, "max_abs_diff": report.max_abs_diff,
                   "agreement": report.agreement, "agreement_kind": report.agreement_kind, "atol": atol},
        **evaluation,
        **({"forced_failed_classes": failed} if failed else {}),
    }
    log(
        f"wrote {out} ({result['size_bytes'] / 1e6:.1f} MB): {metric_text(spec.kind, evaluation)} on "
        f"{evaluation['onnx_images']} validation images through onnxruntime, "
        f"{evaluation['cpu_latency_ms_median']:.1f} ms per image on this CPU (median)"
    )
    metrics, config = load_run_files(run_dir)
    for stale in (variant_path(out, v) for v in VARIANTS if v not in variants):
        if stale.is_file():
            log(f"note: {stale} was made from the {out.name} this export replaced; bench now skips it: export "
                f"again with --{stale.suffixes[0][1:]} to remake it, or delete it")
    refused = []
    if variants:
        calib = calibration_frames(calib_dir, Path(config["data"]), {p for p, _ in pairs}, calib_images)
        result["variants"] = {}
        for variant in variants:
            entry = make_variant(variant, out, spec, calib, pairs, evaluation, max_loss, log, calib_method)
            result["variants"][variant] = entry
            if not entry["written"]:
                refused.append(variant)
    (run_dir / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    card = write_card(run_dir, out, spec, metrics, config, result)
    log(f"wrote {card}")
    if refused:
        raise UserError(
            f"{out} and its card were written, but the {' and '.join(refused)} variant lost more than "
            f"--max-loss {max_loss} and was not: see the lines above"
        )
    return result


def calibration_frames(calib_dir: Path | None, data_dir: Path, exclude: set[Path], limit: int) -> list[np.ndarray]:
    """Up to ``limit`` images, spread evenly: from --calib DIR, else the run's data minus validation."""
    from ..deploy.images import collect_images

    paths = collect_images([str(calib_dir or data_dir)])
    paths = [p for p in paths if p not in exclude] or paths
    step = max(1, len(paths) // limit)
    frames = [f for f in (read_image(p) for p in paths[::step][:limit]) if f is not None]
    if not frames:
        raise UserError(f"no readable calibration images in {calib_dir or data_dir}")
    return frames


def make_variant(variant: str, out: Path, spec: TaskSpec, calib: list[np.ndarray], pairs, fp32: dict,
                 max_loss: float, log, calib_method: str = "percentile") -> dict:
    """Build, evaluate and (within the margin) write one precision variant of ``out``."""
    path = variant_path(out, variant)
    with temp_beside(out) as tmp:
        t0 = time.perf_counter()
        used = quantize_int8(out, tmp, calib, spec, calib_method) if variant == "int8" else 0
        if variant == "fp16":
            convert_fp16(out, tmp)
        built_s = time.perf_counter() - t0
        evaluation = evaluate_onnx(tmp, pairs)
        loss = metric_loss(spec.kind, fp32, evaluation)
        entry = {"file": str(path), "size_bytes": tmp.stat().st_size, "loss": loss, "max_loss": max_loss,
                 "calibration_images": used,
                 "calibration_method": calib_method if variant == "int8" else "", **evaluation}
        line = (f"{variant}: {metric_text(spec.kind, evaluation)} vs {metric_text(spec.kind, fp32)} for float32, "
                f"{entry['size_bytes'] / 1e6:.1f} MB, {evaluation['cpu_latency_ms_median']:.1f} ms on this CPU "
                f"(built in {built_s:.1f} s)")
        entry["written"] = loss <= max_loss
        if entry["written"]:
            publish(tmp, path)
            log(f"wrote {path}: {line}")
        else:
            log(f"REFUSED {path}: {line}; it loses {loss:.4f}, more than --max-loss {max_loss}")
        return entry


def rewrite_card(run_dir: Path, out: Path) -> Path:
    """The card of an exported model again, from the run folder and that export's report (export.json),
    e.g. after its notes were corrected; the model file is not touched."""
    report_path = Path(run_dir) / "export.json"
    if not report_path.is_file() or not out.is_file():
        raise UserError(f"--card-only needs {out} and the run's export.json from exporting it")
    report = json.loads(report_path.read_text())
    if Path(report["file"]).resolve() != out.resolve():
        raise UserError(f"{run_dir} was last exported to {report['file']}, not {out}")
    metrics, config = load_run_files(run_dir)
    return write_card(Path(run_dir), out, read_spec(run_dir), metrics, config, report)


def export_from_args(args) -> dict:
    if getattr(args, "card_only", False):
        log_line(f"wrote {rewrite_card(args.run, args.out)}")
        return {}
    if args.batch == "dynamic":
        batch = None
    elif str(args.batch).isdigit() and int(args.batch) > 0:
        batch = int(args.batch)
    else:
        raise UserError(f"--batch must be 'dynamic' or a positive integer, got {args.batch!r}")
    if not 13 <= args.opset <= 21:
        raise UserError(f"--opset must be within 13..21 (17 is the default; 15 for TensorRT 8.5), got {args.opset}")
    if args.max_loss < 0:
        raise UserError(f"--max-loss must be 0 or more, got {args.max_loss}")
    variants = tuple(v for v in VARIANTS if getattr(args, v))
    if args.calib is not None and "int8" not in variants:
        raise UserError("--calib is for --int8: add --int8, or drop --calib")
    return export(args.run, args.out, args.opset, batch, args.atol, args.min_agreement,
                  args.parity_images, args.overwrite, variants=variants, calib_dir=args.calib,
                  calib_images=args.calib_images, max_loss=args.max_loss, calib_method=args.calib_method,
                  force=getattr(args, "force", False))

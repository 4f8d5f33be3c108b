"""``edgevision train DATA --head knn|linear``: a classifier head fitted in numpy on the ONNX backbone's
features, without TensorFlow (numpy, OpenCV, onnxruntime and onnx only), so it runs on a Jetson too.

Features come from models/backbone.onnx through onnxruntime (the GPU providers where they load) and are
cached per image file (deploy/embed.py). The head (deploy/heads.py) is joined to the backbone graph into
ONE classify model, ``model.onnx`` in the run folder, checked against the numpy head on the validation
images before it is kept; ``--export OUT`` (or ``edgevision export RUN --out OUT``) copies it with a card.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..deploy.embed import Backbone, FeatureCache
from ..deploy.errors import UserError, shell_quote
from ..deploy.heads import KnnHead, LinearHead, fit_knn, fit_linear, join
from ..deploy.images import check_new_output, publish, read_image, temp_beside
from ..deploy.runner import Runner, RunnerOptions
from ..deploy.spec import TaskSpec
from .classify_text import card_section, check_text, output_text  # noqa: F401  (the card's texts)
from .data import ClassDataset, find_dataset, with_extra
from .metrics import classification_metrics
from .options import TrainConfig, flat_config
from .runfolder import (
    check_export_target,
    check_failed_classes,
    export_hint,
    log_line,
    new_run_dir,
    read_spec,
    read_val_list,
    warn_failed_classes,
    write_run_files,
)

SHIPPED_BACKBONE = Path(__file__).resolve().parents[1] / "models" / "backbone.onnx"
ATOL = 1e-3  # parity: numpy head vs the joined ONNX model, probabilities


def backbone_path(config: TrainConfig) -> Path:
    return Path(config.classify.backbone_onnx) if config.classify.backbone_onnx else SHIPPED_BACKBONE


def _features(cache: FeatureCache, paths: tuple[Path, ...], labels: np.ndarray, what: str, log) -> tuple:
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 5 or done == total:
            last[0] = time.perf_counter()
            log(f"  {what}: embedded {done}/{total} new images")

    feats, skipped = cache.features(list(paths), progress, notice=log)
    keep = np.array([p not in set(skipped) for p in paths], bool)
    return feats, labels[keep], skipped, time.perf_counter() - t0


def train(config: TrainConfig, log: Callable[[str], None] = log_line) -> Path:
    """Fit ``config.classify.head`` on cached backbone features; return the run folder."""
    t_start = time.perf_counter()
    dataset: ClassDataset = find_dataset(config.data, config.val_split, config.seed)
    if config.extra_data:
        extras = [find_dataset(d, config.val_split, config.seed) for d in config.extra_data]
        dataset = with_extra(dataset, extras, list(config.extra_data))
    classes, size, head_kind = dataset.classes, config.input_size, config.classify.head
    backbone = Backbone(backbone_path(config), size, RunnerOptions(notice=log))
    log(f"backbone {backbone.path.name} at {size}x{size}: {backbone.report.line()}")
    cache = FeatureCache(backbone)
    f_train, y_train, skipped_train, t_train = _features(cache, dataset.train.paths, dataset.train.labels, "train", log)
    f_val, y_val, skipped_val, t_val = _features(cache, dataset.val.paths, dataset.val.labels, "val", log)
    skipped = skipped_train + skipped_val
    counts = np.bincount(y_train, minlength=len(classes))
    for name, n_train, n_val in zip(classes, counts, np.bincount(y_val, minlength=len(classes))):
        if n_train == 0:
            raise UserError(f"class {name!r} has no readable training image: add photos or remove the class folder")
        if n_val == 0 and (dataset.val.labels == classes.index(name)).any():
            raise UserError(f"class {name!r} has no readable validation image: its accuracy could not be measured")
    log(f"features: {len(f_train)} train, {len(f_val)} val in {t_train + t_val:.1f} s ({cache.misses} embedded, "
        f"{cache.hits} from the cache in {cache.folder})"
        + (f"; {len(skipped)} unreadable images skipped" if skipped else ""))
    t_fit = time.perf_counter()
    if head_kind == "knn":
        head, fit_report = fit_knn(f_train, y_train, f_val, y_val, classes)
        log(f"kNN: k={head.k} chosen on val (balanced accuracy by k: "
            + ", ".join(f"{k}: {v:.3f}" for k, v in fit_report["val_balanced_accuracy_by_k"].items()) + ")")
    else:
        head, fit_report = fit_linear(f_train, y_train, f_val, y_val, classes)
        log(f"linear: L2 {head.l2:g} chosen on val (balanced accuracy by L2: "
            + ", ".join(f"{k:g}: {v:.3f}" for k, v in fit_report["val_balanced_accuracy_by_l2"].items()) + ")")
    fit_seconds = time.perf_counter() - t_fit
    probs = head.probs(f_val)
    metrics = classification_metrics(y_val, probs, classes)
    run_dir = new_run_dir(config)
    try:
        kept_val = [p for p in dataset.val.paths if p not in set(skipped)]
        parity = _write_model(run_dir, backbone.path, head, (size, size), kept_val, probs, log)
        metrics.update({
            "train_images": len(f_train), "val_images": len(f_val), "skipped_images": [str(p) for p in skipped],
            "train_seconds": round(time.perf_counter() - t_start, 1), "mode": "fast", "head": head_kind,
            "head_fit": {**fit_report, "seconds": round(fit_seconds, 3)},
            "features": {"seconds": round(t_train + t_val, 1), "embedded": cache.misses, "cached": cache.hits,
                         "cache": str(cache.folder), "backbone": str(backbone.path),
                         "provider": backbone.report.running},
            "parity": parity,
            "split": "given" if dataset.split_given else (
                f"seeded {config.val_split:.0%} stratified split (seed {config.seed})"),
        })
        if config.extra_data:
            metrics["val_by_source"] = _by_source(config, kept_val, probs.argmax(1) == y_val)
            for name, v in metrics["val_by_source"].items():
                log(f"  {name}: val accuracy {v['accuracy']:.4f} on {v['images']} images")
        spec = TaskSpec(kind="classify", input_hw=(size, size), labels=classes)
        val_rows = [(p, [classes[y]]) for p, y in zip(kept_val, y_val)]
        write_run_files(run_dir, spec, config.to_toml(), metrics, {}, val_rows)
        # the same config as JSON: export reads it where Python 3.10 has no tomllib (a Jetson without tomli)
        (run_dir / "config.json").write_text(json.dumps(asdict(config), default=list) + "\n")
        _confusion_png(metrics, classes, run_dir, log)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        log(f"removed the unfinished run folder {run_dir}")
        raise
    log(f"val accuracy {metrics['accuracy']:.4f} (balanced {metrics['balanced_accuracy']:.4f}) on {len(f_val)} "
        f"images; {metrics['train_seconds']:.1f} s in all")
    warn_failed_classes(metrics, log)
    log(f"run saved to {run_dir} (model.onnx: {(run_dir / 'model.onnx').stat().st_size / 1e6:.1f} MB)")
    log(f"export it: edgevision export {shell_quote(run_dir)} --out {shell_quote(export_hint(config.run_name))}")
    return run_dir


def _by_source(config: TrainConfig, kept_val: list[Path], right: np.ndarray) -> dict:
    roots = [Path(d).expanduser().resolve() for d in (config.data, *config.extra_data)]
    source = np.array([next(i for i, r in enumerate(roots) if p.resolve().is_relative_to(r)) for p in kept_val])
    return {str(d): {"accuracy": float(right[source == i].mean()), "images": int((source == i).sum())}
            for i, d in enumerate((config.data, *config.extra_data)) if (source == i).any()}


def _write_model(run_dir: Path, backbone: Path, head: KnnHead | LinearHead, input_hw: tuple[int, int],
                 val_paths: list[Path], expected: np.ndarray, log) -> dict:
    """Join backbone and head into run_dir/model.onnx, then check it against the numpy head on val."""
    import onnx

    out = run_dir / "model.onnx"
    with temp_beside(out) as tmp:
        onnx.save(join(backbone, head, input_hw), tmp)
        runner = Runner(tmp, RunnerOptions(providers="cpu"))
        frames = [read_image(p) for p in val_paths[:64]]
        got = np.stack([r.probs for r in runner.infer(frames)[0]]) if frames else expected[:0]
        want = expected[: len(got)]
        diff = float(np.abs(got - want).max()) if len(got) else 0.0
        agree = float((got.argmax(1) == want.argmax(1)).mean()) if len(got) else 1.0
        text = (f"parity on {len(got)} validation images: max |numpy head - onnx| = {diff:.2e} (allowed {ATOL:.0e}), "
                f"top-1 agreement {agree:.2%}")
        log(text)
        if diff > ATOL or agree < 1.0:
            raise UserError(f"the joined ONNX model disagrees with the numpy head, not kept: {text}")
        publish(tmp, out)
    return {"images": len(got), "max_abs_diff": diff, "agreement": agree, "atol": ATOL,
            "agreement_kind": "top-1 agreement", "reference": "numpy head"}


def _confusion_png(metrics: dict, classes: tuple[str, ...], run_dir: Path, log) -> None:
    try:
        from .metrics import save_confusion_png

        save_confusion_png(np.asarray(metrics["confusion_matrix"]), classes, run_dir / "confusion.png")
    except ImportError:  # matplotlib is in the training extra, not on a runtime-only Jetson
        log("no confusion.png: matplotlib is not installed (the matrix is in metrics.json)")


# --- export: the run's one ONNX file, copied with its card -------------------------------------------------


def is_head_run(run_dir: Path) -> bool:
    return (Path(run_dir) / "model.onnx").is_file() and not (Path(run_dir) / "model.keras").is_file()


def export(run_dir: Path, out: Path, overwrite: bool = False, log=log_line, force: bool = False) -> dict:
    """Copy a head run's model.onnx to ``out`` and write its card; measured through the runtime. A model
    that never gets a class right on val is refused unless ``force``."""
    from .card import write_card

    run_dir = Path(run_dir)
    if out.suffix != ".onnx":
        raise UserError(f"--out must end in .onnx, got {out}")
    for path in (out, out.with_suffix(".md")):
        check_new_output(path, overwrite)
    spec = read_spec(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    failed = check_failed_classes(spec.kind, metrics, force, run_dir, out, log)
    config = flat_config(json.loads((run_dir / "config.json").read_text()))
    pairs = read_val_list(run_dir)
    runner = Runner(run_dir / "model.onnx", RunnerOptions(providers="cpu"))
    right, frames = [], []
    for path, info in pairs:
        image = read_image(path)
        if image is not None:
            frames.append(image)
            right.append(runner(image).label == info[0])
    times = []
    one = frames[:1] or [np.zeros((*spec.input_hw, 3), np.uint8)]
    for i in range(55):
        t0 = time.perf_counter()
        runner.session.run(runner.output_names, {runner.input_name: runner.prepare(one).batch})
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1e3)
    with temp_beside(out) as tmp:  # the same atomic write as every export
        shutil.copyfile(run_dir / "model.onnx", tmp)
        publish(tmp, out)
    report = {"file": str(out), "size_bytes": out.stat().st_size, "opset": 17, "batch": "dynamic",
              "parity": metrics["parity"], "onnx_accuracy": float(np.mean(right)) if right else 0.0,
              "onnx_images": len(right), "cpu_latency_ms_median": round(statistics.median(times), 2),
              "cpu_latency_ms_p95": round(float(np.percentile(times, 95)), 2),
              **({"forced_failed_classes": failed} if failed else {})}
    (run_dir / "export.json").write_text(json.dumps(report, indent=2) + "\n")
    card = write_card(run_dir, out, spec, metrics, config, report, face=sys.modules[__name__])
    log(f"wrote {out} ({report['size_bytes'] / 1e6:.1f} MB): accuracy {report['onnx_accuracy']:.4f} on "
        f"{len(right)} validation images through onnxruntime, {report['cpu_latency_ms_median']:.1f} ms per image "
        f"on this CPU (median); wrote {card}")
    return report


# --- the card's texts (training/card.py asks the 'face' of a model for them) -------------------------------


def model_text(config: dict) -> str:
    head = config.get("classify_head", "knn")
    what = {"knn": "kNN (cosine, class-balanced votes; the training embeddings are stored in the file)",
            "linear": "softmax regression (numpy, L2 chosen on val)"}[head]
    return f"`models/backbone.onnx` (MobileNetV2 1.0, pooled features) + {what}, fitted without TensorFlow"


def train_from_args(args, config: TrainConfig) -> Path:
    """``edgevision train --head knn|linear [--export OUT]``."""
    if args.int8 or args.fp16:
        raise UserError("--int8 and --fp16 are for Keras runs: a numpy head's model is exported in float32 only")
    if (args.overwrite or getattr(args, "force", False)) and args.export is None:
        raise UserError("--overwrite and --force go with --export OUT.onnx: add it, or drop them")
    log = check_export_target(args.export, args.overwrite)  # fail before training, not after
    run_dir = train(config, log)
    if args.export is not None:
        export(run_dir, args.export, overwrite=args.overwrite, force=getattr(args, "force", False))
    return run_dir


def export_from_args(args) -> dict:
    """``edgevision export RUN --out OUT`` for a numpy head's run (the Keras-only flags are refused)."""
    if args.int8 or args.fp16:
        raise UserError("--int8 and --fp16 are for Keras runs: a numpy head's model is exported in float32 only")
    if args.card_only:
        raise UserError("--card-only is for Keras runs: export the head run again with --overwrite")
    return export(args.run, args.out, overwrite=args.overwrite, force=getattr(args, "force", False))

"""Model cards: models/NAME.md written at export from the run's measured numbers."""

from __future__ import annotations

import platform
import re
import sys
from pathlib import Path

from ..deploy.errors import shell_quote
from ..deploy.spec import TaskSpec
from ..deploy.tasks import headline as runtime_headline
from .runfolder import failed_classes_text, shown_path
from .tasks import task


def data_source(data_dir: Path) -> str:
    """One line on where the data came from and its licence, from SOURCE.md or LICENSE beside it."""
    source, licence = "", ""
    source_md = data_dir / "SOURCE.md"
    if source_md.is_file():
        text = source_md.read_text(errors="replace")
        if m := re.search(r"(?:Source repo|^\s*-\s*repo):\s*(\S+)", text, re.M):
            source = m.group(1)
        if m := re.search(r"(?:License|^\s*-\s*licen[cs]e):\s*(.+)", text, re.M | re.I):
            licence = m.group(1).strip()
    if not licence and (data_dir / "LICENSE").is_file():
        licence = next((ln.strip() for ln in (data_dir / "LICENSE").read_text(errors="replace").splitlines()
                        if ln.strip()), "")
    parts = [f"from {source}" if source else "", f"licence: {licence}" if licence else "licence: not stated"]
    return "; ".join(p for p in parts if p)


def retrain_command(config: dict, out: Path, variants: tuple[str, ...] = ()) -> str:
    config_file = config.get("config_file") or ""
    shipped = Path(config_file).parent.name == "configs" and Path(config_file).parent.parent.name == "training"
    if shipped:
        source = f"--config {Path(config_file).stem}"
    elif config_file:
        source = f"--config {shell_quote(config_file)}"
    else:
        source = (f"{shell_quote(config['data'])} --mode {config['mode']} --input-size {config['input_size']} "
                  f"--weights {shell_quote(config['weights'])}")
        if config.get("task") == "keypoints":
            source += f" --task keypoints --points {','.join(config['points'])} --head {config['head']}"
        if config.get("classify_head", "softmax") != "softmax":
            source += f" --head {config['classify_head']}"
    flags = "".join(f" --{v}" for v in variants)
    return f"edgevision train {source} --export {shell_quote(out)}{flags} --overwrite"


def write_card(run_dir: Path, out: Path, spec: TaskSpec, metrics: dict, config: dict, export_report: dict,
               face=None) -> Path:
    """Write ``out`` with .md instead of .onnx; returns its path. ``face`` gives the texts (model_text, output_text,
    card_section, check_text): the task's training module unless a TF-free trainer passes its own."""
    card = out.with_suffix(".md")
    data_dir = Path(shown_path(config["data"]))
    face = face or task(spec.kind)  # the task's own texts and card section
    weights = config["weights"]
    weights_text = "ImageNet" if weights != "none" else "none (from scratch)"
    size_mb = export_report["size_bytes"] / 1e6
    parity = export_report["parity"]
    latency = (
        f"{export_report['cpu_latency_ms_median']:.1f} ms median, {export_report['cpu_latency_ms_p95']:.1f} ms p95 "
        f"per image (batch 1, onnxruntime CPU provider, inference only; {platform.machine()}, {_cpu_count()} cores, "
        f"Python {sys.version.split()[0]})"
    )
    output = face.output_text(spec)
    model_text = face.model_text(config)
    rows = [
        ("task", f"`{spec.kind}`, {'points' if spec.kind == 'keypoints' else 'labels'} "
                 f"{', '.join(f'`{x}`' for x in spec.labels)}"),
        ("input", f"`image`: (batch, {spec.input_hw[0]}, {spec.input_hw[1]}, 3) float32 RGB 0..255, NHWC; scaling to "
                  f"[-1, 1] is in the graph; the runner resizes ({spec.resize})"),
        ("output", output),
        ("model", f"{model_text}; backbone weights {weights_text}; {config['mode']} mode"),
        ("file", f"{size_mb:.1f} MB, ONNX opset {export_report['opset']}, batch {export_report['batch']}"),
        ("CPU latency", latency),
        ("training time", f"{metrics['train_seconds']:.0f} s on that CPU ({metrics['train_images']} training images)"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    section = face.card_section(metrics, export_report)
    text = f"""# {out.name}: {spec.kind}, {", ".join(spec.labels)}

{forced_text(export_report)}| | |
|---|---|
{table}

## Data and licence

{_split_text(metrics, data_dir)}: {data_source(data_dir)}.{_extra_data_text(config)}

{config.get("notes") or ""}

## Validation metrics

{section}

{peer_section(config)}Export parity ({parity.get("reference", "Keras")} vs onnxruntime on {parity["images"]}
validation images): max |difference|
{parity["max_abs_diff"]:.1e} (allowed {parity["atol"]:.0e}), {parity.get("agreement_kind", "top-1 agreement")} \
{parity.get("agreement", parity.get("top1_agreement", 0)):.0%}.

{_variants_section(export_report, spec.kind)}## Retrain

```
{_extra_data_commands(config)}{retrain_command(config, out, tuple(export_report.get("variants", ())))}
```

{check_text(face, out, data_dir, config)}
"""
    card.write_text(text)
    for variant, entry in export_report.get("variants", {}).items():
        if entry["written"]:
            write_variant_card(variant, entry, out, spec, config, export_report)
    return card


def forced_text(export_report: dict) -> str:
    """A bold paragraph when the export was forced past classes the model never gets right on val."""
    failed = export_report.get("forced_failed_classes")
    if not failed:
        return ""
    return (f"**Exported with --force: this model never gets {', '.join(failed)} right on its validation images "
            f"({failed_classes_text(failed)}). Do not use it for {', '.join(failed)}; train it again.**\n\n")


def check_text(face, out: Path, data_dir: Path, config: dict) -> str:
    """How to check the model on its own val photos: the task's own line, or predict's."""
    if hasattr(face, "check_text"):
        return face.check_text(out, data_dir, config)
    val = shell_quote(Path(data_dir) / "val")
    return f"Check it: `edgevision predict --model {shell_quote(out)} {val}` prints one JSON line per image."


def peer_section(config: dict) -> str:
    """The card's side-by-side with a peer model (MediaPipe...) measured on the same photos, if given."""
    peer = (config.get("peer") or "").strip()
    return f"### Beside a peer model, on the same validation photos\n\n{peer}\n\n" if peer else ""


def headline(kind: str) -> tuple[str, str, bool]:
    """(key in the export report, name, higher is better) of a task's headline metric."""
    h = runtime_headline(kind)
    return f"onnx_{h.key}", h.name, h.higher_is_better


def _variants_section(report: dict, kind: str) -> str:
    variants = report.get("variants")
    if not variants:
        return ""
    metric, name, _ = headline(kind)
    rows = [f"| float32 | `{Path(report['file']).name}` | {report['size_bytes'] / 1e6:.1f} MB | {report[metric]:.4f} "
            f"| | {report['cpu_latency_ms_median']:.1f} ms |"]
    for variant, v in variants.items():
        change = f"{v[metric] - report[metric]:+.4f}" + ("" if v["written"] else " (refused, not written)")
        rows.append(f"| {variant} | `{Path(v['file']).name}` | {v['size_bytes'] / 1e6:.1f} MB | {v[metric]:.4f} "
                    f"| {change} | {v['cpu_latency_ms_median']:.1f} ms |")
    int8 = variants.get("int8", {})
    calib = f"{int8.get('calibration_images', 0)} images, {int8.get('calibration_method', 'minmax')} calibration"
    max_loss = next(iter(variants.values()))["max_loss"]
    table = "\n".join(rows)
    return (
        "## Precision variants\n\n"
        "Measured the same way on the same validation images (through onnxruntime, on this CPU). A\n"
        f"variant is written only when it loses at most {max_loss} ({name}).\n\n"
        f"| precision | file | size | {name} | change | CPU latency |\n|---|---|---|---|---|---|\n{table}\n\n"
        f"INT8 is static QDQ quantisation (symmetric, per-channel weights; {calib}),\n"
        "the explicit form TensorRT builds INT8 engines from; on a CPU the QDQ pairs are not fused\n"
        "and it runs slower than float32. FP16 keeps float32 input and output. Their speed on a Jetson's\n"
        "GPU is still to be measured.\n\n"
    )


PRECISION_TEXT = {
    "int8": "INT8: static QDQ quantisation (symmetric, per-channel weights; {calib}), the explicit form TensorRT "
            "builds INT8 engines from; on a CPU it runs slower than float32",
    "fp16": "FP16: float16 weights and maths, float32 input and output; for GPUs",
}


def write_variant_card(variant: str, entry: dict, out: Path, spec: TaskSpec, config: dict, report: dict) -> Path:
    """A short card for models/NAME.<variant>.onnx: what it is, its own measured metric against float32."""
    path = Path(entry["file"]).with_suffix(".md")
    metric, name, _ = headline(spec.kind)
    calib = f"{entry.get('calibration_images', 0)} images, {entry.get('calibration_method', 'minmax')} calibration"
    verdict = "written" if entry["written"] else "refused, not written"
    labels = ", ".join(f"`{x}`" for x in spec.labels)
    latency = (f"{entry['cpu_latency_ms_median']:.1f} ms median, {entry['cpu_latency_ms_p95']:.1f} ms p95 per image "
               f"(float32: {report['cpu_latency_ms_median']:.1f} ms; onnxruntime CPU provider)")
    text = f"""# {Path(entry["file"]).name}: {variant.upper()} variant of {out.name}

| | |
|---|---|
| precision | {PRECISION_TEXT[variant].format(calib=calib)} |
| task | the same spec as `{out.name}`: `{spec.kind}`, {labels}, input {spec.input_hw[0]}x{spec.input_hw[1]} |
| file | {entry["size_bytes"] / 1e6:.1f} MB (float32: {report["size_bytes"] / 1e6:.1f} MB) |
| CPU latency | {latency} |

## Data and licence

The same model and data as [{out.with_suffix(".md").name}]({out.with_suffix(".md").name}):
`{Path(config["data"]).name}`, {data_source(Path(config["data"]))}.

## Validation metrics

Validation {name} (onnxruntime, val/): **{entry[metric]:.4f}** on {entry["onnx_images"]} images; float32
{report[metric]:.4f}; change {entry[metric] - report[metric]:+.4f}, allowed loss {entry["max_loss"]} ({verdict}).

## Make it

```
{retrain_command(config, out, variants=tuple(report.get("variants", ())))}
```
"""
    path.write_text(text)
    return path


def _extra_data_text(config: dict) -> str:
    extra = config.get("extra_data") or []
    if not extra:
        return ""
    return "\n\n" + "\n".join(f"Also trained and validated on `{shown_path(d)}`: {data_source(Path(d))}."
                               for d in extra)


def _extra_data_commands(config: dict) -> str:
    """The commands that made the extra data folders (from their SOURCE.md), to run first."""
    lines = []
    for folder in [config["data"], *(config.get("extra_data") or [])]:  # made data folders say how
        source = Path(folder) / "SOURCE.md"
        text = source.read_text(errors="replace") if source.is_file() else ""
        if m := re.search(r"Command:\s*(.+)", text):
            lines.append(m.group(1).strip() + "\n")
    return "".join(lines)


def _split_text(metrics: dict, data_dir: Path) -> str:
    if metrics.get("val_by_source"):
        return (f"Trained on {metrics['train_images']} and validated on {metrics['val_images']} images in all; "
                f"`{data_dir.name}/` with its own train/ and val/")
    if metrics.get("split", "given") == "given":
        return (f"Trained on `{data_dir.name}/train` ({metrics['train_images']} images) and validated on "
                f"`{data_dir.name}/val` ({metrics['val_images']} images)")
    return (f"Trained on {metrics['train_images']} and validated on {metrics['val_images']} images of "
            f"`{data_dir.name}/`, a {metrics['split']}")


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

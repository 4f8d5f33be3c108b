"""A classifier's model card texts (TF-free): the Keras trainer and the numpy heads share them."""

from __future__ import annotations

from pathlib import Path

from ..deploy.errors import shell_quote
from ..deploy.spec import TaskSpec
from .runfolder import shown_path


def output_text(spec: TaskSpec) -> str:
    return f"`probs`: (batch, {len(spec.labels)}) softmax probabilities"


def check_text(out: Path, data_dir: Path, config: dict) -> str:
    val = shell_quote(Path(data_dir) / "val")
    return (f"Check it: `edgevision predict --model {shell_quote(out)} {val}` prints one JSON line per image and the "
            "accuracy on the images whose folder names a label.")


def _by_source_table(metrics: dict) -> str:
    by = metrics.get("val_by_source")
    if not by:
        return ""
    rows = "\n".join(f"| `{shown_path(name)}` | {v['accuracy']:.4f} | {v['images']} |" for name, v in by.items())
    by_what = "numpy head" if metrics.get("head") in ("knn", "linear") else "Keras"
    return f"""Validation accuracy per data source ({by_what}):

| source | accuracy | images |
|---|---|---|
{rows}

"""


def card_section(metrics: dict, report: dict) -> str:
    per_class = "\n".join(
        f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        for name, m in metrics["per_class"].items()
    )
    cm_rows = "\n".join(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |"
                        for name, row in zip(metrics["classes"], metrics["confusion_matrix"]))
    return f"""Validation accuracy (onnxruntime, val/): **{report["onnx_accuracy"]:.4f}** on {report["onnx_images"]} \
images (balanced accuracy {metrics["balanced_accuracy"]:.4f}, macro F1 {metrics["macro_f1"]:.4f}, from Keras before
export). The validation set is small: one image is {100 / max(metrics["val_images"], 1):.1f} points of accuracy.

| class | precision | recall | F1 | images |
|---|---|---|---|---|
{per_class}

{_by_source_table(metrics)}Confusion matrix (rows: true, columns: predicted):

| | {" | ".join(metrics["classes"])} |
|---|{"---|" * len(metrics["classes"])}
{cm_rows}"""

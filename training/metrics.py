"""Classification metrics (pure numpy) and the run folder's PNG plots (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, classes) counts; rows are true classes, columns predicted."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Accuracy, balanced accuracy, per-class precision/recall/F1 and the confusion matrix."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(probs).argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, len(classes))
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = cm.sum(1) > 0
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            c: {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4),
                "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, cm.sum(1))
        },
        "classes": list(classes),
        "confusion_matrix": cm.tolist(),
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_confusion_png(cm: np.ndarray, classes: tuple[str, ...], path: Path) -> None:
    plt = _pyplot()
    size = 2.5 + 0.5 * len(classes)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_title(f"validation: {np.trace(cm)}/{cm.sum()} correct")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_curves_png(history: dict[str, dict[str, list[float]]], path: Path, metric: str | None = "accuracy") -> None:
    """Loss and ``metric`` (if any) per epoch, one colour per stage (head, finetune)."""
    plt = _pyplot()
    keys = ("loss", metric) if metric else ("loss",)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    axes = axes[0]
    offset = 0
    for stage, h in history.items():
        epochs = np.arange(offset + 1, offset + 1 + len(h.get("loss", [])))
        for ax, key in zip(axes, keys):
            ax.plot(epochs, h.get(key, []), label=f"{stage} train")
            ax.plot(epochs, h.get(f"val_{key}", []), "--", label=f"{stage} val")
            ax.set_xlabel("epoch")
            ax.set_title(key)
        offset += len(h.get("loss", []))
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

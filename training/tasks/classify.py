"""``edgevision train``: transfer learning for image classifiers, in two speeds.

fast      the frozen backbone's features are computed once and a softmax head is fitted on
          them (seconds for a few hundred images on a CPU).
finetune  the fast head first, then the top of the backbone is unfrozen and trained with
          augmentation, a cosine learning-rate schedule and early stopping on validation loss.

Either way a run folder holds the Keras model, metrics.json, confusion.png, curves.png, the
exact config (config.toml), the spec to embed on export, the validation file list and
TensorBoard logs. Images stream from their files (training/stream.py), never all in memory;
``distribute`` trains on a tf.distribute strategy (training/distribute.py), batch_size per device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ...deploy.errors import UserError
from ...deploy.spec import TaskSpec
from ..classify_text import card_section, check_text, output_text  # noqa: F401  (the card's texts)
from ..data import ClassDataset, find_dataset, with_extra
from ..distribute import global_batch, shard_by_data, train_on_strategy
from ..fit import (
    EpochLine,
    FeatureRows,
    StopOnSignal,
    feature_batches,
    features_of,
    finetune_callbacks,
    finetune_schedule,
    log_line,
    log_saved,
    on_disk,
    predict_all,
    run_folder,
    unfreeze_backbone,
)
from ..metrics import classification_metrics, save_confusion_png, save_curves_png
from ..model import MLP_UNITS, augmenter, build_classifier, feature_extractor
from ..options import TrainConfig
from ..runfolder import write_run_files
from ..stream import SplitStream, open_split


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """'balanced' weights: n / (classes * n_c), so each class adds the same total weight."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return {c: float(len(labels) / (num_classes * counts[c])) for c in range(num_classes) if counts[c]}


def _compile(model: keras.Model, lr, config: TrainConfig) -> None:
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )


FEATURE_BATCH = 64  # images per step of the frozen backbone's feature pass


def fit_head(model, train_s: SplitStream, val_s: SplitStream, config, run_dir, log, weights, classes,
             strategy) -> dict:
    """Fit the softmax head on backbone features (computed once, streamed) and copy it into ``model``."""
    num_classes = len(classes)
    extractor = feature_extractor(model)
    t0 = time.perf_counter()
    parts = [train_s.images(FEATURE_BATCH)]
    if config.augment.copies:
        augment = augmenter(config.augment, num_classes, classes)
        augmented = train_s.images(FEATURE_BATCH).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        parts += [augmented] * config.augment.copies
    f_train, y_feat = features_of(extractor, parts, train_s.count * (1 + config.augment.copies), run_dir)
    f_val, y_val = features_of(extractor, [val_s.images(FEATURE_BATCH)], val_s.count, run_dir)
    log(f"features: {len(f_train)} train, {len(f_val)} val in {time.perf_counter() - t0:.1f} s"
        + on_disk(f_train, f_val))

    hidden = [keras.layers.Dropout(config.dropout), keras.layers.Dense(MLP_UNITS, activation="relu")] if (
        config.classify.head == "mlp") else []
    with strategy.scope():
        head = keras.Sequential(
            [
                keras.Input((f_train.shape[1],)),
                *hidden,
                keras.layers.Dropout(config.dropout),
                keras.layers.Dense(num_classes, activation="softmax"),
            ]
        )
        _compile(head, config.head_lr, config)
    devices = strategy.num_replicas_in_sync
    batch = config.batch_size * devices
    with (FeatureRows(f_train, keras.utils.to_categorical(y_feat, num_classes)) as train_rows,
          FeatureRows(f_val, keras.utils.to_categorical(y_val, num_classes)) as val_rows):
        train_ds, steps = feature_batches(train_rows, batch, devices, config.seed, config.head_epochs)
        val_ds, _ = feature_batches(val_rows, batch, devices)
        history = head.fit(
            shard_by_data(train_ds),
            validation_data=shard_by_data(val_ds),
            epochs=config.head_epochs,
            steps_per_epoch=steps,
            shuffle=False,
            class_weight=weights,
            verbose=0,
            callbacks=[
                keras.callbacks.EarlyStopping("val_loss", patience=max(config.patience, 20), restore_best_weights=True),
                keras.callbacks.TensorBoard(str(run_dir / "tb" / "head")),
                EpochLine("head", config.head_epochs, log, every=max(1, config.head_epochs // 10)),
                StopOnSignal(),
            ],
        )
    model.get_layer("probs").set_weights(head.layers[-1].get_weights())
    if hidden:
        model.get_layer("hidden").set_weights(hidden[1].get_weights())
    return history.history


def fine_tune(model, train_s: SplitStream, val_s: SplitStream, config, run_dir, log, weights, classes,
              strategy) -> dict:
    num_classes = len(classes)
    unfreeze_backbone(model, config, log)
    augment = augmenter(config.augment, num_classes, classes)
    devices = strategy.num_replicas_in_sync
    batch = config.batch_size * devices

    def one_hot(images, labels):
        return tf.cast(images, tf.float32), tf.one_hot(labels, num_classes)

    train_ds, steps = train_s.epochs(batch, config.seed, config.epochs, devices=devices)
    train_ds = (train_ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
                .map(one_hot)
                .prefetch(tf.data.AUTOTUNE))
    val_ds = val_s.images(batch, devices).map(one_hot)
    with strategy.scope():
        _compile(model, finetune_schedule(config, steps), config)
    history = model.fit(
        shard_by_data(train_ds),
        validation_data=shard_by_data(val_ds),
        epochs=config.epochs,
        steps_per_epoch=steps,
        class_weight=weights,
        shuffle=False,  # train_ds is shuffled each epoch already
        verbose=0,
        callbacks=finetune_callbacks(config, run_dir, log, "accuracy"),
    )
    return history.history


def train(config: TrainConfig, log: Callable[[str], None] = log_line) -> Path:
    """Train a classifier as ``config`` says; return the run folder (training/distribute.py: on a
    multiworker cluster only the chief keeps it)."""
    return train_on_strategy(config, log, _train)


def _train(config: TrainConfig, log: Callable[[str], None], strategy, scratch: Path | None) -> Path:
    t_start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    dataset: ClassDataset = find_dataset(config.data, config.val_split, config.seed)
    if config.extra_data:
        extras = [find_dataset(d, config.val_split, config.seed) for d in config.extra_data]
        dataset = with_extra(dataset, extras, list(config.extra_data))
    classes, size = dataset.classes, config.input_size
    train_s = open_split(dataset.train, size, "train", config.cache, config.seed, True, log)
    val_s = open_split(dataset.val, size, "val", config.cache, config.seed, False, log)
    skipped = train_s.skipped + val_s.skipped
    y_train = train_s.labels
    counts = np.bincount(y_train, minlength=len(classes))
    for name, n_train, n_val in zip(classes, counts, np.bincount(val_s.labels, minlength=len(classes))):
        if n_train == 0:
            raise UserError(f"class {name!r} has no readable training image: add photos or remove the class folder")
        if n_val == 0 and (dataset.val.labels == classes.index(name)).any():
            raise UserError(f"class {name!r} has no readable validation image: its accuracy could not be measured")
    log(
        f"{train_s.count} train / {val_s.count} val images, classes "
        + ", ".join(f"{c} ({n})" for c, n in zip(classes, counts))
        + ("" if dataset.split_given else f" (seeded {config.val_split:.0%} stratified split)")
        + (f"; {len(skipped)} unreadable images skipped" if skipped else "")
    )
    replicas = strategy.num_replicas_in_sync
    global_batch(config.batch_size, strategy, log)
    run_dir = run_folder(config, scratch)
    with strategy.scope():
        model = build_classifier(len(classes), size, config.alpha, config.weights, config.dropout, config.backbone,
                                 hidden=MLP_UNITS if config.classify.head == "mlp" else 0)
    weights = class_weights(y_train, len(classes)) if config.class_weight == "balanced" else None

    history = {}
    stage_args = (config, run_dir, log, weights, classes, strategy)
    if config.weights != "none":  # random features carry no information: no head stage from scratch
        history["head"] = fit_head(model, train_s, val_s, *stage_args)
    if config.mode == "finetune":
        history["finetune"] = fine_tune(model, train_s, val_s, *stage_args)

    probs, y_val = predict_all(model, val_s.images(FEATURE_BATCH))
    metrics = classification_metrics(y_val, probs, classes)
    metrics.update(
        {
            "train_images": train_s.count,
            "val_images": val_s.count,
            "skipped_images": [str(p) for p in skipped],
            "train_seconds": round(time.perf_counter() - t_start, 1),
            "mode": config.mode,
            "head": config.classify.head,
            "devices": replicas,
            "split": "given" if dataset.split_given else (
                f"seeded {config.val_split:.0%} stratified split (seed {config.seed})"
            ),
        }
    )
    kept = [p for p, ok in zip(dataset.val.paths, val_s.readable) if ok]  # val_s.images is in split order
    if config.extra_data:  # each source's own validation accuracy: a merged number can hide a weak one
        roots = [Path(d).expanduser().resolve() for d in (config.data, *config.extra_data)]
        source = np.array([next(i for i, r in enumerate(roots) if p.resolve().is_relative_to(r)) for p in kept])
        right = probs.argmax(axis=1) == y_val
        metrics["val_by_source"] = {
            str(d): {"accuracy": float(right[source == i].mean()), "images": int((source == i).sum())}
            for i, d in enumerate((config.data, *config.extra_data)) if (source == i).any()
        }
        for name, v in metrics["val_by_source"].items():
            log(f"  {name}: val accuracy {v['accuracy']:.4f} on {v['images']} images")
    model.save(run_dir / "model.keras")
    spec = TaskSpec(kind="classify", input_hw=(size, size), labels=classes)
    val_rows = [(p, [classes[y]]) for p, y in zip(kept, y_val)]
    write_run_files(run_dir, spec, config.to_toml(), metrics, history, val_rows)
    save_confusion_png(np.asarray(metrics["confusion_matrix"]), classes, run_dir / "confusion.png")
    save_curves_png(history, run_dir / "curves.png")
    log(
        f"val accuracy {metrics['accuracy']:.4f} (balanced {metrics['balanced_accuracy']:.4f}) on {val_s.count} "
        f"images; {metrics['train_seconds']:.0f} s in all"
    )
    log_saved(run_dir, config, scratch, log, metrics)
    return run_dir


# --- export and card: what this task checks and says -----------------------------------------

OUTPUTS = ("probs",)


def agreement(expected: list[np.ndarray], got: list[np.ndarray], spec: TaskSpec) -> tuple[float, str]:
    """Export parity beyond max |difference|: the same top-1 class."""
    return float((got[0].argmax(1) == expected[0].argmax(1)).mean()), "top-1 agreement"


def quality(results: list, known: list[list[str]], spec: TaskSpec) -> dict:
    """Accuracy of the ONNX model's results against the run's validation labels."""
    correct = sum(int(r.label == info[0]) for r, info in zip(results, known))
    return {"onnx_accuracy": correct / max(len(results), 1)}


def model_text(config: dict) -> str:
    hidden = f" + a {MLP_UNITS}-unit ReLU layer" if config.get("classify_head") == "mlp" else ""
    return f"MobileNetV2 (alpha {config['alpha']}) + global pooling{hidden} + softmax"


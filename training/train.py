"""``edgevision train``: transfer learning for image classifiers, in two speeds.

fast      the frozen backbone's features are computed once and a softmax head is fitted on
          them (seconds for a few hundred images on a CPU).
finetune  the fast head first, then the top of the backbone is unfrozen and trained with
          augmentation, a cosine learning-rate schedule and early stopping on validation loss.

Either way a run folder holds the Keras model, metrics.json, confusion.png, curves.png, the
exact config (config.toml), the spec to embed on export, the validation file list and
TensorBoard logs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ..deploy.errors import UserError
from ..deploy.spec import TaskSpec
from .data import ClassDataset, find_dataset, load_images, with_extra
from .metrics import classification_metrics, save_confusion_png, save_curves_png
from .model import augmenter, build_classifier, feature_extractor, set_trainable_top
from .options import TrainConfig, config_from_args


class EpochLine(keras.callbacks.Callback):
    """One line per epoch (or every ``every`` epochs) with loss, accuracy and time."""

    def __init__(self, stage: str, total: int, log: Callable[[str], None], every: int = 1,
                 metric: str | None = "accuracy") -> None:
        super().__init__()
        self.stage, self.total, self.log, self.every, self.metric = stage, total, log, every, metric
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every and epoch + 1 != self.total:
            return
        logs = logs or {}
        m, short = self.metric, {"accuracy": "acc"}.get(self.metric, self.metric)
        extra = f"  {short} {logs.get(m, 0):.4g}" if m else ""
        extra_val = f"  val_{short} {logs.get('val_' + m, 0):.4g}" if m else ""
        self.log(
            f"{self.stage} epoch {epoch + 1:>3}/{self.total}  loss {logs.get('loss', 0):.4g}{extra}  "
            f"val_loss {logs.get('val_loss', 0):.4g}{extra_val}  {time.perf_counter() - self.start:.1f} s"
        )


def new_run_dir(config: TrainConfig) -> Path:
    """runs/<name>-<date>-<time>, never an existing folder."""
    base = Path(config.runs_dir) / f"{config.run_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


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


def fit_head(model, x_train, y_train, x_val, y_val, config, run_dir, log, weights, classes) -> dict:
    """Fit the softmax head on cached backbone features and copy it into ``model``."""
    num_classes = model.output_shape[-1]
    extractor = feature_extractor(model)
    t0 = time.perf_counter()
    f_train = extractor.predict(x_train.astype(np.float32), batch_size=64, verbose=0)
    y_feat = y_train
    if config.augment_copies:
        augment = augmenter(config, num_classes, classes)
        copies = []
        for _ in range(config.augment_copies):
            xs, ys = augment(tf.constant(x_train), tf.constant(y_train))
            copies.append((extractor.predict(xs.numpy(), batch_size=64, verbose=0), ys.numpy()))
        f_train = np.concatenate([f_train, *[c[0] for c in copies]])
        y_feat = np.concatenate([y_train, *[c[1] for c in copies]])
    f_val = extractor.predict(x_val.astype(np.float32), batch_size=64, verbose=0)
    log(f"features: {len(f_train)} train, {len(f_val)} val in {time.perf_counter() - t0:.1f} s")

    head = keras.Sequential(
        [
            keras.Input((f_train.shape[1],)),
            keras.layers.Dropout(config.dropout),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )
    _compile(head, config.head_lr, config)
    history = head.fit(
        f_train,
        keras.utils.to_categorical(y_feat, num_classes),
        validation_data=(f_val, keras.utils.to_categorical(y_val, num_classes)),
        epochs=config.head_epochs,
        batch_size=config.batch_size,
        class_weight=weights,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping("val_loss", patience=max(config.patience, 20), restore_best_weights=True),
            keras.callbacks.TensorBoard(str(run_dir / "tb" / "head")),
            EpochLine("head", config.head_epochs, log, every=max(1, config.head_epochs // 10)),
        ],
    )
    model.get_layer("probs").set_weights(head.layers[-1].get_weights())
    return history.history


class AugmentedBatches(keras.utils.PyDataset):
    """Batches of freshly augmented samples, reshuffled every epoch. ``augment(image, target, rng)``
    returns the (image, target) pair the model trains on."""

    def __init__(self, images, targets, batch_size: int, augment, seed: int) -> None:
        super().__init__()
        self.images, self.targets, self.batch_size, self.augment = images, targets, batch_size, augment
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, i: int):
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        pairs = [self.augment(self.images[j], self.targets[j], self.rng) for j in idx]
        return np.stack([p[0] for p in pairs]).astype(np.float32), np.stack([p[1] for p in pairs])

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.images))


def unfreeze_backbone(owner: keras.Model, config: TrainConfig, log: Callable[[str], None]) -> None:
    """The whole backbone from scratch (weights 'none'), else its top ``config.unfreeze`` layers."""
    if config.weights == "none":
        trainable = set_trainable_top(owner, None)
        log(f"training the whole backbone from scratch ({trainable} weight tensors)")
    else:
        trainable = set_trainable_top(owner, config.unfreeze)
        log(f"fine-tuning the top {config.unfreeze} backbone layers ({trainable} weight tensors)")


def finetune_schedule(config: TrainConfig, steps_per_epoch: int):
    """Linear warm-up over the first 5% of steps to ``config.lr``, then cosine decay to 0."""
    steps = config.epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=config.lr, warmup_steps=max(1, steps // 20))


def finetune_callbacks(config: TrainConfig, run_dir: Path, log: Callable[[str], None], metric: str | None) -> list:
    return [
        *([keras.callbacks.EarlyStopping("val_loss", patience=config.patience, restore_best_weights=True)]
          if config.patience else []),
        keras.callbacks.TensorBoard(str(run_dir / "tb" / "finetune")),
        EpochLine("finetune", config.epochs, log, metric=metric),
    ]


def fine_tune(model, x_train, y_train, x_val, y_val, config, run_dir, log, weights, classes) -> dict:
    num_classes = len(classes)
    unfreeze_backbone(model, config, log)
    augment = augmenter(config, num_classes, classes)

    def one_hot(images, labels):
        return images, tf.one_hot(labels, num_classes)

    train_ds = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .map(one_hot)
        .prefetch(tf.data.AUTOTUNE)
    )
    val_ds = tf.data.Dataset.from_tensor_slices(
        (x_val.astype(np.float32), keras.utils.to_categorical(y_val, num_classes))
    ).batch(config.batch_size)
    _compile(model, finetune_schedule(config, math.ceil(len(x_train) / config.batch_size)), config)
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        class_weight=weights,
        shuffle=False,  # train_ds is shuffled each epoch already
        verbose=0,
        callbacks=finetune_callbacks(config, run_dir, log, "accuracy"),
    )
    return history.history


def _print_now(message: str) -> None:
    print(message, flush=True)  # per-epoch lines must show at once, also through a pipe


def train(config: TrainConfig, log: Callable[[str], None] = _print_now) -> Path:
    """Train a classifier as ``config`` says; return the run folder."""
    t_start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    dataset: ClassDataset = find_dataset(config.data, config.val_split, config.seed)
    if config.extra_data:
        extras = [find_dataset(d, config.val_split, config.seed) for d in config.extra_data]
        dataset = with_extra(dataset, extras, list(config.extra_data))
    classes, size = dataset.classes, config.input_size
    x_train, y_train, skipped_train = load_images(dataset.train, size)
    x_val, y_val, skipped_val = load_images(dataset.val, size)
    skipped = skipped_train + skipped_val
    counts = np.bincount(y_train, minlength=len(classes))
    log(
        f"{len(x_train)} train / {len(x_val)} val images, classes "
        + ", ".join(f"{c} ({n})" for c, n in zip(classes, counts))
        + ("" if dataset.split_given else f" (seeded {config.val_split:.0%} stratified split)")
        + (f"; {len(skipped)} unreadable images skipped" if skipped else "")
    )
    run_dir = new_run_dir(config)
    model = build_classifier(len(classes), size, config.alpha, config.weights, config.dropout, config.backbone)
    weights = class_weights(y_train, len(classes)) if config.class_weight == "balanced" else None

    history = {}
    if config.weights != "none":  # random features carry no information: no head stage from scratch
        history["head"] = fit_head(model, x_train, y_train, x_val, y_val, config, run_dir, log, weights, classes)
    if config.mode == "finetune":
        history["finetune"] = fine_tune(model, x_train, y_train, x_val, y_val, config, run_dir, log, weights, classes)

    probs = model.predict(x_val.astype(np.float32), batch_size=64, verbose=0)
    metrics = classification_metrics(y_val, probs, classes)
    metrics.update(
        {
            "train_images": len(x_train),
            "val_images": len(x_val),
            "skipped_images": [str(p) for p in skipped],
            "train_seconds": round(time.perf_counter() - t_start, 1),
            "mode": config.mode,
            "split": "given" if dataset.split_given else (
                f"seeded {config.val_split:.0%} stratified split (seed {config.seed})"
            ),
        }
    )
    if config.extra_data:  # each source's own validation accuracy: a merged number can hide a weak one
        roots = [Path(d).expanduser().resolve() for d in (config.data, *config.extra_data)]
        kept = [p for p in dataset.val.paths if p not in skipped]
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
    (run_dir / "spec.json").write_text(spec.to_json() + "\n")
    (run_dir / "config.toml").write_text(config.to_toml())
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    val_lines = [f"{p}\t{classes[y]}" for p, y in zip(dataset.val.paths, dataset.val.labels) if p not in skipped]
    (run_dir / "val.tsv").write_text("\n".join(val_lines) + "\n")
    (run_dir / "history.json").write_text(json.dumps(history, default=float) + "\n")
    save_confusion_png(np.asarray(metrics["confusion_matrix"]), classes, run_dir / "confusion.png")
    save_curves_png(history, run_dir / "curves.png")
    log(
        f"val accuracy {metrics['accuracy']:.4f} (balanced {metrics['balanced_accuracy']:.4f}) on {len(x_val)} images; "
        f"{metrics['train_seconds']:.0f} s in all"
    )
    log(f"run saved to {run_dir}")
    log(f"export it: edgevision export {run_dir} --out models/{config.run_name}.onnx")
    return run_dir


def train_from_args(args) -> Path:
    config = config_from_args(args)
    if args.export is not None:
        from ..camera.sinks import check_new_output

        check_new_output(args.export, args.overwrite)  # fail before training, not after
    try:
        if config.task == "keypoints":
            from .train_keypoints import train_keypoints

            run_dir = train_keypoints(config, _print_now)
        elif config.task == "segment":
            from .train_segment import train_segment

            run_dir = train_segment(config, _print_now)
        elif config.task == "detect":
            from .train_detect import train_detect

            run_dir = train_detect(config, _print_now)
        else:
            run_dir = train(config)
    except tf.errors.ResourceExhaustedError as exc:
        raise UserError(
            f"out of memory while training: lower --batch-size or --input-size ({exc.message[:80]})"
        ) from exc
    if args.export is not None:
        from ..deploy.export import export

        variants = tuple(v for v in ("int8", "fp16") if getattr(args, v))
        export(run_dir, args.export, overwrite=args.overwrite, variants=variants)
    return run_dir

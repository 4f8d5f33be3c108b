"""Keras models for transfer learning. Preprocessing (scaling to [-1, 1]) lives inside the model;
augmentation does not (it runs in the tf.data pipeline and never reaches the exported graph)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from ..deploy.errors import UserError

BACKBONE_NAME = "backbone"


def tiny_backbone(input_size: int) -> keras.Model:
    """Three strided 3x3 convolutions (16, 32, 64 filters), no BatchNorm: trains from scratch in
    seconds on simple data. For quick experiments and the tests, not for the shipped models."""
    inputs = keras.Input((input_size, input_size, 3))
    x = inputs
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", kernel_initializer="he_normal")(x)
    return keras.Model(inputs, x, name=BACKBONE_NAME)


def build_backbone(input_size: int, alpha: float, weights: str, kind: str = "mobilenet_v2") -> keras.Model:
    """MobileNetV2 without its top; ``weights`` is 'imagenet' (Keras download), 'none' or a .h5 path."""
    if kind == "tiny":
        return tiny_backbone(input_size)
    kw = dict(input_shape=(input_size, input_size, 3), include_top=False, alpha=alpha, name=BACKBONE_NAME)
    if weights == "imagenet":
        try:
            backbone = keras.applications.MobileNetV2(weights="imagenet", **kw)
        except Exception as exc:  # no network, proxy, or certificate trouble: all end here
            raise UserError(
                f"could not download ImageNet weights ({type(exc).__name__}; offline?): pass --weights PATH to a "
                "local MobileNetV2 no-top .h5 file (this project's shared folder has "
                "weights/mobilenet_v2_1.0_224_imagenet_notop.weights.h5; Keras caches it in ~/.keras/models/ on a "
                "machine that is online), or train from scratch with --mode finetune --weights none"
            ) from exc
    else:
        backbone = keras.applications.MobileNetV2(weights=None, **kw)
        if weights != "none":
            try:
                backbone.load_weights(weights)
            except (ValueError, OSError) as exc:
                raise UserError(
                    f"{weights} does not fit MobileNetV2 alpha={alpha} without top: {str(exc).splitlines()[0]}"
                ) from exc
    return backbone


MLP_UNITS = 256  # the hidden layer of the 'mlp' head


def build_classifier(
    num_classes: int, input_size: int, alpha: float, weights: str, dropout: float, backbone_kind: str = "mobilenet_v2",
    hidden: int = 0,
) -> keras.Model:
    """image (n, s, s, 3) float32 RGB 0..255 -> probs (n, classes); ``hidden`` > 0 puts a ReLU layer of that
    many units before the softmax (the 'mlp' head)."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1, name="to_minus1_1")(inputs)
    backbone = build_backbone(input_size, alpha, weights, backbone_kind)
    if weights == "none":
        # From scratch, BatchNorm must learn its statistics; Keras' momentum of 0.999 would
        # need thousands of steps to forget the initial ones, far more than a small set gives.
        for layer in backbone.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = 0.9
        x = backbone(x)
    else:
        x = backbone(x, training=False)  # pretrained BatchNorm stays in inference mode, also when fine-tuned
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if hidden:
        x = layers.Dropout(dropout, name="hidden_dropout")(x)
        x = layers.Dense(hidden, activation="relu", name="hidden")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="classifier")


def feature_extractor(model: keras.Model) -> keras.Model:
    """The classifier up to the pooled features: image -> (n, features)."""
    return keras.Model(model.input, model.get_layer("pool").output, name="features")


def set_trainable_top(model: keras.Model, count: int | None) -> int:
    """Freeze the backbone except its top ``count`` layers (BatchNorm layers stay frozen); None
    makes every layer trainable (training from scratch). Returns the backbone's trainable tensors."""
    backbone = model.get_layer(BACKBONE_NAME)
    backbone.trainable = True
    if count is None:
        return len(backbone.trainable_weights)
    cut = len(backbone.layers) - count
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= cut and not isinstance(layer, layers.BatchNormalization)
    return len(backbone.trainable_weights)


def augmenter(config, num_classes: int, classes: tuple[str, ...]):
    """A tf function (images uint8 (n,s,s,3), labels (n,)) -> (float32 images, labels), random each call."""
    geometric = keras.Sequential(
        [
            *([layers.RandomFlip("horizontal")] if config.hflip else []),
            layers.RandomRotation(config.rotation_deg / 360.0, fill_mode="reflect"),
            layers.RandomZoom((-config.zoom, config.zoom), fill_mode="reflect"),
            layers.RandomTranslation(config.translate, config.translate, fill_mode="reflect"),
        ],
        name="augment",
    )
    partner = np.full(num_classes, -1, dtype=np.int64)
    for pair in config.vflip_swap:
        a, b = pair.split(":")
        for x in (a, b):
            if x not in classes:
                raise UserError(f"vflip_swap names {x!r}, which is not a class ({', '.join(classes)})")
        partner[classes.index(a)], partner[classes.index(b)] = classes.index(b), classes.index(a)
    partner_t = tf.constant(partner)
    strength = float(config.color)
    grey_p = float(config.grayscale)
    lowres_p = float(getattr(config, "lowres", 0.0))

    @tf.function
    def augment(images, labels):
        images = tf.cast(images, tf.float32)
        n = tf.shape(images)[0]
        if config.vflip_swap:
            swap = (tf.random.uniform((n,)) < 0.5) & (tf.gather(partner_t, labels) >= 0)
            images = tf.where(swap[:, None, None, None], tf.reverse(images, axis=[1]), images)
            labels = tf.where(swap, tf.gather(partner_t, labels), labels)
        images = geometric(images, training=True)
        if lowres_p > 0:  # shrink to 24..64 px and scale back up: small, blurry faces and hands
            hw = tf.shape(images)[1:3]
            side = tf.random.uniform((), 24, 65, dtype=tf.int32)
            small = tf.image.resize(images, [side, side], method="area", antialias=True)
            blurry = tf.image.resize(small, hw, method="bilinear")
            pick = tf.random.uniform((n, 1, 1, 1)) < lowres_p
            images = tf.where(pick, blurry, images)
        if strength > 0:
            x = images / 255.0
            x = x + tf.random.uniform((n, 1, 1, 1), -strength, strength) * 0.5  # brightness
            mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
            x = (x - mean) * tf.random.uniform((n, 1, 1, 1), 1 - strength, 1 + strength) + mean  # contrast
            grey = tf.reduce_mean(x, axis=3, keepdims=True)
            x = (x - grey) * tf.random.uniform((n, 1, 1, 1), 1 - 2 * strength, 1 + 2 * strength) + grey  # saturation
            images = tf.clip_by_value(x, 0.0, 1.0) * 255.0
        if grey_p > 0:
            to_grey = tf.random.uniform((n, 1, 1, 1)) < grey_p
            images = tf.where(to_grey, tf.repeat(tf.reduce_mean(images, axis=3, keepdims=True), 3, axis=3), images)
        return images, labels

    return augment

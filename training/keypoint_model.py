"""Keras keypoint models: image -> points (n, k, 2), x and y normalised to the input (0..1).

Two heads on the MobileNetV2 backbone, chosen by measurement (see the nose model card):
- ``regression``: global pooling of the last feature map, then a sigmoid dense layer.
- ``heatmap``: the stride-16 feature map, two convolutions to one heat map per point, and a
  spatial soft-argmax (the expected position under a softmax over the map), which keeps
  sub-cell precision and exports as plain Softmax/MatMul ONNX ops.
Each model is ``features`` (backbone) then ``head``, so fast mode can cache features.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from .model import BACKBONE_NAME, build_backbone

STRIDE16_LAYER = "block_13_expand_relu"  # MobileNetV2's last stride-16 activation


@keras.saving.register_keras_serializable(package="edgevision")
class SoftArgmax2D(layers.Layer):
    """(n, h, w, k) logits -> (n, k, 2) expected (x, y) in 0..1 (cell centres)."""

    def call(self, logits):
        shape = ops.shape(logits)
        h, w, k = shape[1], shape[2], shape[3]
        flat = ops.reshape(logits, (-1, h * w, k))  # (n, hw, k)
        prob = ops.softmax(flat, axis=1)
        ys = (ops.cast(ops.arange(h), "float32") + 0.5) / ops.cast(h, "float32")
        xs = (ops.cast(ops.arange(w), "float32") + 0.5) / ops.cast(w, "float32")
        grid_x = ops.reshape(ops.tile(xs[None, :], (h, 1)), (1, h * w, 1))
        grid_y = ops.reshape(ops.tile(ys[:, None], (1, w)), (1, h * w, 1))
        x = ops.sum(prob * grid_x, axis=1)  # (n, k)
        y = ops.sum(prob * grid_y, axis=1)
        return ops.stack([x, y], axis=2)  # (n, k, 2)


@keras.saving.register_keras_serializable(package="edgevision")
class MirrorImage(layers.Layer):
    """(n, h, w, c) -> the same images mirrored left-right."""

    def call(self, images):
        return ops.flip(images, axis=2)


@keras.saving.register_keras_serializable(package="edgevision")
class UnmirrorPoints(layers.Layer):
    """Points predicted on a mirrored image -> points on the original: x -> (s - 1) / s - x for an
    s-pixel-wide input, and left_/right_ names trade places (``partner``)."""

    def __init__(self, width: int, partner: list[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.width, self.partner = int(width), [int(i) for i in partner]

    def call(self, points):
        points = ops.take(points, self.partner, axis=1)
        x = (self.width - 1) / self.width - points[..., 0]
        return ops.stack([x, points[..., 1]], axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "width": self.width, "partner": self.partner}


def with_flip_average(model: keras.Model, input_size: int, partner: np.ndarray) -> keras.Model:
    """A model that averages the prediction on an image and (un-mirrored) on its mirror image."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    direct = model(inputs)
    mirrored = UnmirrorPoints(input_size, partner.tolist())(model(MirrorImage()(inputs)))
    outputs = layers.Average(name="points")([direct, mirrored])
    return keras.Model(inputs, outputs, name="keypoints_flip_average")


def build_features(input_size: int, alpha: float, weights: str, head: str, backbone_kind: str) -> keras.Model:
    """image (n, s, s, 3) float32 RGB 0..255 -> the feature map the head reads."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1, name="to_minus1_1")(inputs)
    backbone = build_backbone(input_size, alpha, weights, backbone_kind)
    if head == "heatmap" and backbone_kind == "mobilenet_v2":
        backbone = keras.Model(backbone.input, backbone.get_layer(STRIDE16_LAYER).output, name=BACKBONE_NAME)
    x = backbone(x, training=False) if weights != "none" else backbone(x)
    return keras.Model(inputs, x, name="features")


def build_head(feature_shape: tuple[int, ...], num_points: int, head: str, dropout: float) -> keras.Model:
    f = keras.Input(feature_shape, name="features")
    if head == "heatmap":
        x = layers.Conv2D(128, 3, padding="same", activation="relu", name="heat_conv")(f)
        x = layers.Dropout(dropout)(x)
        x = layers.Conv2D(num_points, 1, name="heat_logits")(x)
        out = SoftArgmax2D(name="soft_argmax")(x)
    else:
        x = layers.GlobalAveragePooling2D()(f)
        x = layers.Dropout(dropout)(x)
        x = layers.Dense(2 * num_points, activation="sigmoid")(x)
        out = layers.Reshape((num_points, 2))(x)  # (n, 2k) -> (n, k, 2)
    return keras.Model(f, out, name="head")


def build_keypoint_model(
    num_points: int, input_size: int, alpha: float, weights: str, dropout: float, head: str,
    backbone_kind: str = "mobilenet_v2",
) -> tuple[keras.Model, keras.Model, keras.Model]:
    """(full model image -> points, features part, head part)."""
    features = build_features(input_size, alpha, weights, head, backbone_kind)
    head_model = build_head(tuple(features.output.shape[1:]), num_points, head, dropout)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    outputs = layers.Identity(name="points")(head_model(features(inputs)))
    return keras.Model(inputs, outputs, name="keypoints"), features, head_model


def normalised(points_px: np.ndarray, size: int) -> np.ndarray:
    """Input pixels -> 0..1 by the same linear map the runner inverts (x_input = x * size)."""
    return points_px / np.float32(size)

"""models/backbone.onnx: MobileNetV2's ImageNet features as one ONNX file, for heads fitted without
TensorFlow (deploy/heads.py, ``edgevision train --head knn|linear``).

image (batch, h, w, 3) float32 RGB 0..255 -> features (batch, 1280), the global average of the last
feature map. The scaling to [-1, 1] is in the graph; height and width are free (any size from 32 px:
the network is convolutional up to the pooling), and the trainer fixes them when it joins a head. The
preprocessing travels in the metadata (``edgevision.backbone``, deploy/embed.py reads it).

    python -m edgevision.training.backbone --weights ../shared/weights/mobilenet_v2_1.0_224_imagenet_notop.weights.h5 \\
        --out models/backbone.onnx

Like every export it checks itself: Keras and onnxruntime on the same images, refused beyond --atol.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import keras
import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from ..deploy.embed import BACKBONE_KEY, BackboneSpec
from ..deploy.errors import UserError
from ..deploy.images import check_new_output, collect_images, publish, read_image, temp_beside
from ..deploy.ops import fit_to_input, to_model_color
from .export import stamped
from .fit import log_line
from .model import build_backbone


def build_features(weights: str, alpha: float = 1.0) -> keras.Model:
    """image (n, h, w, 3) RGB 0..255 -> (n, 1280) pooled MobileNetV2 features, any h and w."""
    inputs = keras.Input((None, None, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="to_minus1_1")(inputs)
    backbone = build_backbone(None, alpha, weights)  # type: ignore[arg-type]  (None: any size)
    x = backbone(x, training=False)
    outputs = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, outputs, name="features")


def convert_features(model: keras.Model, spec: BackboneSpec, opset: int = 17) -> onnx.ModelProto:
    signature = (tf.TensorSpec((None, None, None, 3), tf.float32, name="image"),)

    @tf.function(input_signature=signature)
    def serve(image):
        return {spec.output: model(image, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    for dim, name in zip(dims, ("batch", "height", "width")):
        dim.dim_param = name
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    return stamped(proto, BACKBONE_KEY, spec)


def parity_frames(folder: Path | None, size: int, limit: int = 16) -> np.ndarray:
    """(n, size, size, 3) RGB images: real photos from ``folder`` where given, else seeded noise."""
    frames = []
    if folder is not None:
        for path in collect_images([str(folder)])[:: max(1, len(collect_images([str(folder)])) // limit)][:limit]:
            bgr = read_image(path)
            if bgr is not None:
                frames.append(fit_to_input(to_model_color(bgr, "RGB"), (size, size), "stretch")[0])
    if not frames:
        frames = list(np.random.default_rng(0).integers(0, 256, (limit, size, size, 3), dtype=np.uint8))
    return np.stack(frames).astype(np.float32)


def make_backbone(weights: str, out: Path, overwrite: bool = False, input_size: int = 224, atol: float = 1e-3,
                  check_images: Path | None = None, log=log_line) -> dict:
    import onnxruntime as ort

    if weights not in ("imagenet",) and not Path(weights).is_file():
        raise UserError(f"weights file not found: {weights} (a MobileNetV2 no-top .h5, or 'imagenet')")
    check_new_output(out, overwrite)
    check_new_output(out.with_suffix(".md"), overwrite)
    model = build_features(weights)
    spec = BackboneSpec(input_hw=(input_size, input_size), dim=int(model.output_shape[-1]),
                        name="MobileNetV2 1.0, ImageNet weights, global average pooling")
    proto = convert_features(model, spec)
    report = {"sizes": {}}
    with temp_beside(out) as tmp:
        onnx.save(proto, tmp)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        for size in sorted({input_size, 160, 96}):  # the sizes the heads use: the free h, w must hold at each
            x = parity_frames(check_images, size)
            want = model.predict(x, verbose=0)
            got = session.run(None, {"image": x})[0]
            diff = float(np.abs(want - got).max())
            report["sizes"][size] = {"images": len(x), "max_abs_diff": diff}
            log(f"parity at {size}x{size} on {len(x)} images: max |keras - onnx| = {diff:.2e} (allowed {atol:.0e})")
            if diff > atol:
                raise UserError(f"backbone export refused, {out} not written: max |keras - onnx| {diff:.2e} > {atol}")
        publish(tmp, out)
    report.update(file=str(out), size_bytes=out.stat().st_size, spec=json.loads(spec.to_json()),
                  tf2onnx=tf2onnx.__version__, tensorflow=tf.__version__)
    log(f"wrote {out} ({report['size_bytes'] / 1e6:.1f} MB)")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgevision.training.backbone", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="MobileNetV2 no-top .h5 file, or 'imagenet' (Keras download)")
    p.add_argument("--out", type=Path, default=Path("models/backbone.onnx"))
    p.add_argument("--input-size", type=int, default=224, help="the default input side written in the metadata")
    p.add_argument("--check-images", type=Path, help="a folder of photos for the parity check (default: noise)")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        report = make_backbone(args.weights, args.out, args.overwrite, args.input_size, check_images=args.check_images)
    except UserError as exc:
        print(f"edgevision: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

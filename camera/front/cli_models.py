"""The command that makes models made elsewhere runnable: ``adopt`` (an ONNX classifier or keypoint model
given a spec; a Teachable Machine Keras export converted through the kit's own export). Ultralytics YOLO
exports need nothing: they run as they are. The work is in deploy/adopt.py and training/teachable.py."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from edgevision.deploy.errors import UserError, shell_quote


def _floats(text: str, flag: str) -> tuple[float, float, float]:
    """'127.5' or '123.675,116.28,103.53' (pixel units, 0..255) -> three floats."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{flag} takes one number or three, comma-separated, got {text!r}") from None
    if len(values) not in (1, 3):
        raise UserError(f"{flag} takes one number or three, comma-separated, got {text!r}")
    return tuple(values * 3 if len(values) == 1 else values)


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise UserError(f"--size takes 224 or HEIGHTxWIDTH (e.g. 224x320), got {text!r}") from None
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise UserError(f"--size takes 224 or HEIGHTxWIDTH (e.g. 224x320), got {text!r}")
    return (parts[0], parts[-1])


def _labels(text: str) -> tuple[str, ...]:
    path = Path(text)
    if path.suffix == ".txt" and path.is_file():  # one label a line; Teachable Machine's '0 name' is read too
        from edgevision.training.teachable import read_labels

        return read_labels(path)
    return tuple(v.strip() for v in text.split(","))


def cmd_adopt(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    if args.model.suffix.lower() in (".h5", ".keras") or args.model.is_dir():
        from edgevision.training.teachable import convert_teachable

        labels = _labels(args.labels) if args.labels else None
        convert_teachable(args.model, args.out, labels, log=say)
    else:
        from edgevision.deploy.adopt import AdoptOptions, adopt

        if not args.labels:
            raise UserError("--labels is needed: the class names (a,b,c) or the points' names, in output order")
        if args.task is None:
            raise UserError("--task is needed: classify or keypoints")
        options = AdoptOptions(args.task, _labels(args.labels), _size(args.size),
                               _floats(args.mean, "--mean"), _floats(args.std, "--std"), args.color, args.resize,
                               args.output)
        spec = adopt(args.model, args.out, options)
        say(f"wrote {args.out}: {spec.kind}, {len(spec.labels)} labels, {spec.input_hw[1]}x{spec.input_hw[0]} "
            f"{spec.layout}; {args.model} is untouched")
    say(f"run it: edgevision predict --model {shell_quote(args.out)} IMAGES")
    return 0


def add_model_commands(sub, say: Callable[[str], None]) -> None:
    p = sub.add_parser("adopt", help="make a model made elsewhere runnable: an ONNX classifier or keypoint model "
                                    "(a spec added), or a Teachable Machine export (converted)")
    p.add_argument("model", type=Path, help="an .onnx file; or Teachable Machine's keras_model.h5 (or its folder)")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write (an existing one is refused)")
    p.add_argument("--task", choices=["classify", "keypoints"], help="ONNX: what its one output is")
    p.add_argument("--labels", help="class names a,b,c (keypoints: the points' names), or a labels.txt file "
                                    "(Teachable Machine: default labels.txt beside the model)")
    p.add_argument("--size", help="ONNX: input size, 224 or HEIGHTxWIDTH (default: the graph's own)")
    p.add_argument("--mean", default="0", help="ONNX: subtracted from 0..255 pixels, one value or R,G,B (default 0)")
    p.add_argument("--std", default="1", help="ONNX: pixels are then divided by it (default 1; 255 for 0..1 "
                                             "inputs, 127.5 with --mean 127.5 for -1..1)")
    p.add_argument("--color", choices=["RGB", "BGR"], default="RGB", help="ONNX: channel order (default RGB)")
    p.add_argument("--resize", choices=["stretch", "letterbox", "crop"], default="stretch",
                   help="ONNX: how frames fit the input (crop: fill it, cut the centre; default stretch)")
    p.add_argument("--output", choices=["probs", "logits"], default="probs",
                   help="ONNX classify: what the output holds (logits get a softmax; default probs)")
    p.set_defaults(func=lambda args: cmd_adopt(args, say))

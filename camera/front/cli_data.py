"""The commands that make datasets from other datasets (no camera, no training): ``crops`` (square crops of
boxes, cut as a chain cuts them), ``pseudo-boxes`` (a detector's confirmed boxes) and ``landmark-boxes``
(face boxes around 68 landmarks). The work is in training/crops.py (no TensorFlow there)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from edgevision.deploy.errors import shell_quote


def cmd_crops(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    from edgevision.training.crops import crops_from_args

    crops_from_args(args, say)
    if args.boxes == "landmarks":
        say(f"wrote {args.out}; train a keypoint model on it (as training/configs/nose.toml does)")
    else:
        say(f"wrote {args.out}; train a classifier on it (with --extra-data {shell_quote(args.out)} beside another "
            "set of the same classes, as training/configs/fingers.toml does)")
    return 0


def cmd_pseudo_boxes(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    from edgevision.training.crops import pseudo_boxes_from_args

    pseudo_boxes_from_args(args, say)
    say(f"wrote {args.out}: add it to a detector's training with --extra-data {shell_quote(args.out)}")
    return 0


def cmd_landmark_boxes(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    from edgevision.training.crops import write_landmark_boxes

    write_landmark_boxes(args.data, args.out, args.box_name, log=say)
    return 0


def add_dataset_commands(sub, say: Callable[[str], None]) -> None:
    p = sub.add_parser("crops", help="a box dataset (VOC/YOLO) -> square crops of its boxes in class folders, "
                                    "cut as 'run --then' cuts them")
    p.add_argument("data", type=Path, help="images with VOC .xml beside them (or images/ + labels/)")
    p.add_argument("out", type=Path, help="a new folder: OUT/{train,val}/<label>/*.jpg")
    p.add_argument("--label-from", choices=["name", "folder"], default="name",
                   help="a crop's label: from its box name (via --label-regex) or the image's folder")
    p.add_argument("--label-regex", default=r"(.*)",
                   help=r"box name -> label, the first group, e.g. '(\d)-hand' (default: the whole name)")
    p.add_argument("--margin", type=float, default=0.15, help="as 'run --crop-margin' (default 0.15)")
    p.add_argument("--jitter", type=int, default=4, help="extra jittered crops per training box (default 4)")
    p.add_argument("--boxes", choices=["labels", "detector", "whole", "landmarks"], default="labels",
                   help="where boxes come from: label files (VOC/YOLO), a --detector on class-folder photos, "
                        "the whole photo (class folders of photos that are already crops), or a face around "
                        "68 landmarks (a keypoint set with landmarks68.csv: keypoint crops, points moved)")
    p.add_argument("--detector", type=Path, metavar="MODEL.onnx",
                   help="--boxes detector: its most confident box on each photo is cut (e.g. models/hands.onnx)")
    p.add_argument("--providers", help="--detector: execution providers (default: best available)")
    p.add_argument("--score-threshold", type=float, help="--detector: its minimum score (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the jitter (default 0)")
    p.set_defaults(func=lambda args: cmd_crops(args, say))

    p = sub.add_parser("pseudo-boxes", help="box class-folder photos with a detector (VOC files), keeping only "
                                           "boxes a classifier confirms: more training boxes for the detector")
    p.add_argument("data", type=Path, help="class folders of photos: DATA/<class>/ or DATA/{train,val}/<class>/")
    p.add_argument("out", type=Path, help="a new folder: copies of the kept photos with a VOC .xml each")
    p.add_argument("--detector", type=Path, required=True, help="a detection .onnx, e.g. models/hands.onnx")
    p.add_argument("--confirm", type=Path, help="a crop classifier whose labels are the folder names")
    p.add_argument("--min-confirm", type=float, default=0.8, help="the classifier's smallest score to keep a box")
    p.add_argument("--box-name", default="hand", help="the name written for each box (default hand)")
    p.add_argument("--score-threshold", type=float, help="the detector's minimum score (default: the model's)")
    p.add_argument("--providers", help="execution providers (default: best available)")
    p.set_defaults(func=lambda args: cmd_pseudo_boxes(args, say))

    p = sub.add_parser("landmark-boxes", help="a face box around each photo's 68 landmarks (VOC files): "
                                             "more training boxes for a face detector")
    p.add_argument("data", type=Path, help="DATA/{train,val}/images/ with landmarks68.csv, e.g. ../shared/data/nose")
    p.add_argument("out", type=Path, help="a new folder: copies of the photos with a VOC .xml each")
    p.add_argument("--box-name", default="face", help="the name written for each box (default face)")
    p.set_defaults(func=lambda args: cmd_landmark_boxes(args, say))

"""edgevision: collect, train, export and run small vision models on Jetson-class devices. Runtime commands
never import TensorFlow; train and export load it when they need it."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from edgevision.camera.capture import add_camera_args, add_collect_args, add_loop_args, capture_from_args
from edgevision.deploy.errors import Terminated, UserError, shell_quote
from edgevision.deploy.nativelog import quiet_native_logs

from .cli_data import add_dataset_commands
from .cli_models import add_model_commands

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "models"
SAMPLE_CLIP = REPO_ROOT / "camera" / "samples" / "thumbs_demo.mp4"
DEMO_MODEL = MODELS_DIR / "thumbs_chain.json"  # the hand detector, then thumbs up/down on each hand
# The course's four projects, each the pipeline that answers it best (see README, Shipped models).
DEMO_PROJECTS = {
    "thumbs": MODELS_DIR / "thumbs_chain.json",  # hands.onnx, then thumbs up/down on each hand
    "fingers": MODELS_DIR / "fingers_chain.json",  # hands.onnx, then 0-5 fingers on each hand
    "emotions": MODELS_DIR / "emotions_chain.json",  # faces.onnx, then happy/sad on each face
    "nose": MODELS_DIR / "nose_chain.json",  # faces.onnx, then the nose tip on each face
}


def say(message: str) -> None:
    """One status line for the user, on stderr (stdout is for results); control characters (ANSI
    escapes, newlines from a label or a file name) are shown escaped, never sent to the terminal."""
    from edgevision.deploy.errors import printable

    print(f"edgevision: {printable(message)}", file=sys.stderr, flush=True)


def _add_runner_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--providers", help="execution providers in order, e.g. 'trt,cuda,cpu' (default: best available)")
    p.add_argument("--require-gpu", action="store_true", help="fail instead of falling back to the CPU")
    p.add_argument("--no-fp16", action="store_true", help="TensorRT: build FP32 engines")
    p.add_argument("--trt-workspace-gb", type=float, default=1.0, help="TensorRT builder memory (default 1 GB)")
    p.add_argument("--device", type=int, default=0, help="CUDA/TensorRT device id (default 0)")
    p.add_argument("--cudnn-algo", default="HEURISTIC", choices=["HEURISTIC", "DEFAULT", "EXHAUSTIVE"],
                   help="CUDA: cuDNN convolution algorithm search (default HEURISTIC: quick first frames)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for onnxruntime (0: automatic)")
    p.add_argument("--score-threshold", type=float, help="detection: minimum score (default: the model's)")
    p.add_argument("--iou-threshold", type=float, help="detection: NMS IoU (default: the model's)")


def _add_chain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--then", type=Path, metavar="MODEL.onnx",
                   help="detection models: classify each box's square crop with this model (e.g. models/fingers.onnx)")
    p.add_argument("--crop-margin", type=float, default=None,
                   help="--then: margin around each box, a share of its longer side (default 0.15)")


def _open_runner(args: argparse.Namespace, model: Path, quiet: bool = False, spin: bool = True,
                 batch: int | None = None):
    """The runner behind --model (and --then): edgevision.load with the provider flags."""
    from edgevision.camera.api import load

    loaded = load(model, getattr(args, "then", None), providers=args.providers, require_gpu=args.require_gpu,
                  fp16=not args.no_fp16, trt_workspace_gb=args.trt_workspace_gb, device=args.device,
                  cudnn_algo=args.cudnn_algo, threads=args.threads, score_threshold=args.score_threshold,
                  iou_threshold=args.iou_threshold, crop_margin=getattr(args, "crop_margin", None), notice=say,
                  spin=spin, batch=batch)
    runner = loaded.runner
    first = getattr(runner, "first", runner)
    if quiet:
        return runner
    say(f"{first.path.name}: {first.spec.kind}, {first.provider_line}")
    if first is not runner:
        say(f"then {runner.then.path.name}: {runner.then.spec.kind}, {runner.then.provider_line}")
    return runner


def _run_loop(args: argparse.Namespace, model: Path, source_text: str, loop: bool | None = None,
              realtime: bool | None = None) -> int:
    from edgevision.camera.live import run_command

    return run_command(args, lambda spin: _open_runner(args, model, spin=spin), source_text, say, loop, realtime)


def cmd_run(args: argparse.Namespace) -> int:
    return _run_loop(args, args.model, args.source)


def cmd_demo(args: argparse.Namespace) -> int:
    from edgevision.camera.sinks import display_available
    from edgevision.camera.sources import SourceError, open_source

    if args.project is not None and args.model is not None:
        raise UserError(f"'demo {args.project}' runs {DEMO_PROJECTS[args.project].name}: drop --model, or the project")
    model = args.model or DEMO_PROJECTS.get(args.project, DEMO_MODEL)
    if not model.is_file():
        raise UserError(f"model not found: {model} (this install has no shipped models: pass --model)")
    source = args.source
    if source is None:
        try:
            with open_source("0"):
                source = "0"
        except SourceError as exc:
            if not SAMPLE_CLIP.is_file():
                raise UserError(f"no camera ({exc}) and no sample clip at {SAMPLE_CLIP}") from exc
            say(f"no camera found ({exc}); running on the sample clip {SAMPLE_CLIP.name} instead")
            source = str(SAMPLE_CLIP)
            # The clip stands in for a camera: it plays at its own pace, and in a window it repeats until you quit.
            window = args.display if args.display is not None else display_available()
            return _run_loop(args, model, source, loop=args.loop or window, realtime=True)
    return _run_loop(args, model, source)


def cmd_predict(args: argparse.Namespace) -> int:
    from edgevision.camera.predict import predict
    from edgevision.deploy.images import collect_images

    runner = _open_runner(args, args.model, batch=args.batch)
    paths = collect_images(args.paths)
    report = predict(runner, paths, sys.stdout, batch_size=args.batch, masks_dir=args.masks, draw_dir=args.draw,
                     inputs=[Path(p) for p in args.paths], notice=say)
    line = f"{report.images} images"
    if report.skipped:
        line += f", {len(report.skipped)} unreadable skipped ({', '.join(p.name for p in report.skipped[:3])}...)"
    if report.accuracy is not None:
        line += f"; accuracy {report.accuracy:.4f} on the {report.scored} whose folder names a label"
    say(line)
    return 0 if report.images else 1


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from edgevision.deploy.evaluate import evaluate_boxes

    if not args.data.is_dir():
        raise UserError(f"data folder not found: {args.data}")
    if args.model.suffix.lower() == ".json":  # a pipeline file: its detector is scored, its chain answers
        from edgevision.camera.api import read_pipeline

        pipeline = read_pipeline(args.model)
        if args.then is not None:
            raise UserError(f"{args.model} is a pipeline file that names its own models: drop --then")
        args.model, args.then = pipeline.model, pipeline.then
        args.crop_margin = pipeline.crop_margin if args.crop_margin is None else args.crop_margin
        args.score_threshold = pipeline.score_threshold if args.score_threshold is None else args.score_threshold
    operating, then = args.score_threshold, args.then
    chain = _open_runner(args, args.model) if then is not None else None  # as 'run' would use it
    args.score_threshold, args.then, args.crop_margin = 0.01, None, None  # the whole PR curve for AP
    runner = _open_runner(args, args.model, quiet=chain is not None)  # said once, for the chain
    operating = runner.spec.score_threshold if operating is None else operating
    report = evaluate_boxes(runner, args.data, tuple(args.rename), operating, chain)
    print(json.dumps(report, indent=2))
    line = (f"AP50 {report['map50']:.4f} on {report['images']} images ({report['true_boxes']} boxes); recall "
            f"{report['recall']:.3f}, precision {report['precision']:.3f} at score {operating}; "
            f"{report['ms_per_image_mean']:.1f} ms per image{' for the chain' if chain else ''}")
    if chain is not None and report["chain_accuracy"] is not None:
        line += (f"; chain: {report['chain_accuracy']:.1%} of {report['chain_images']} images answered as their "
                 f"folder ({report['no_box_images']} without a box)")
    say(line)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from edgevision.deploy.runner import model_info

    if args.model.suffix.lower() == ".json":  # a pipeline file: its settings, then each model's info
        from dataclasses import asdict

        from edgevision.camera.api import read_pipeline

        pipe = read_pipeline(args.model)
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(pipe).items()}
        models = [model_info(m, notice=say) for m in (pipe.model, pipe.then) if m is not None]
        print(json.dumps({"pipeline": str(args.model), **settings, "models": models}, indent=2))
        return 0
    print(json.dumps(model_info(args.model, notice=say), indent=2))
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from edgevision.camera.capture import check_serve_args
    from edgevision.camera.collect import CollectOptions, parse_names, parse_split
    from edgevision.camera.collect_window import check_display, collect, review
    from edgevision.deploy.errors import EXIT_CODES

    check_serve_args(args)
    serve = args.serve and {"address": args.serve, "token": args.serve_token, "allow_hosts": args.serve_allow_host,
                            "fps": args.serve_fps, "quality": args.serve_quality}
    if (args.classes is None) == (args.points is None):
        raise UserError("give either --classes a,b,... or --points name,... (one of them)")
    options = CollectOptions(
        root=args.data,
        classes=parse_names(args.classes, "classes") if args.classes else (),
        points=parse_names(args.points, "points") if args.points else (),
        val_fraction=parse_split(args.split), seed=args.seed, auto_rate=args.rate,
    )
    if args.review:
        reviewer = review(options, serve, say)
        say(reviewer.collector.train_hint())
        return EXIT_CODES.get(reviewer.stopped_by, 0)
    live_head = None
    if args.live_head:
        if not serve:
            check_display()  # before the backbone loads
        if options.points:
            raise UserError("--live-head is for --classes: a kNN head learns labels, not points")
        from edgevision.camera.live_head import LiveHead
        from edgevision.deploy.liveknn import LiveKnn

        out = args.live_head_out or args.data / "live_knn.onnx"
        live_head = LiveHead(LiveKnn(args.backbone_onnx, options.classes), out, args.overwrite)
        say(f"live kNN head on {args.backbone_onnx.name} ({live_head.live.backbone.report.line()}): Enter exports "
            f"it to {out if args.overwrite else str(out) + ' (or the next free NAME-2.onnx...)'}, s saves")
    collector = collect(options, args.source, capture_from_args(args), serve, say, live_head, args.loop)
    if live_head is not None:
        for path in live_head.exported:
            say(f"exported the live kNN head to {path}: edgevision run --model {shell_quote(path)} "
                f"--source {shell_quote(args.source)}")
    say(f"saved {collector.saved_this_session} this session")
    say(collector.train_hint())
    return EXIT_CODES.get(collector.stopped_by, 0)  # 130 / 143 when Ctrl-C or SIGTERM ended it


def cmd_doctor(args: argparse.Namespace) -> int:
    from edgevision.camera.doctor import doctor_from_args

    return doctor_from_args(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from edgevision.camera.bench import bench_from_args

    return bench_from_args(args)


def cmd_train(args: argparse.Namespace) -> int:
    from edgevision.training.options import NUMPY_HEADS, config_from_args

    config = config_from_args(args, notice=say)
    if config.task == "classify" and config.classify.head in NUMPY_HEADS:  # numpy + onnxruntime: no TensorFlow
        from edgevision.training.fasthead import train_from_args as train_head

        train_head(args, config)
        return 0
    from edgevision.training.extra import needs_training_extra

    needs_training_extra("; without TensorFlow, train a head with --head linear (or knn)")
    from edgevision.training.train import train_from_args

    train_from_args(args, config)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from edgevision.training.fasthead import export_from_args, is_head_run

    if not args.run.is_dir():
        raise UserError(f"run folder not found: {args.run} (training prints its run folder at the end)")
    if is_head_run(args.run):  # a numpy head's run: its model.onnx is made already, no TensorFlow
        export_from_args(args)
        return 0
    from edgevision.training.extra import needs_training_extra

    needs_training_extra()
    from edgevision.training.export import export_from_args

    export_from_args(args)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgevision")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgevision", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edgevision {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a model live on a camera, stream, video or images")
    p.add_argument("--model", type=Path, required=True,
                   help="an edgevision .onnx file, or a pipeline .json (a detector and its --then model)")
    p.add_argument("--source", required=True,
                   help="0, /dev/video1, csi://0, a GStreamer pipeline, video, image, folder, rtsp:// or http:// URL")
    add_loop_args(p)
    _add_chain_args(p)
    _add_runner_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="the live app: webcam 0, or the sample clip when there is no camera")
    p.add_argument("project", nargs="?", choices=sorted(DEMO_PROJECTS),
                   help="one of the course's projects (default thumbs): "
                        + ", ".join(f"{k} runs models/{v.name}" for k, v in DEMO_PROJECTS.items()))
    p.add_argument("--model", type=Path, help=f"default: {DEMO_MODEL.relative_to(REPO_ROOT)}")
    p.add_argument("--source", help="default: webcam 0, else the shipped sample clip")
    add_loop_args(p)
    _add_runner_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("predict", help="one JSON line per image on stdout")
    p.add_argument("--model", type=Path, required=True, help="an edgevision .onnx file or a pipeline .json")
    p.add_argument("paths", nargs="+", help="image files and folders (searched recursively)")
    p.add_argument("--batch", type=int, default=8, help="images per inference batch")
    p.add_argument("--masks", type=Path, metavar="DIR", help="segmentation: write a PNG mask per image here")
    p.add_argument("--draw", type=Path, metavar="DIR", help="write each image with the overlay drawn, as PNG")
    _add_chain_args(p)
    _add_runner_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("eval", help="detection models: AP50, recall and precision on a labelled box folder "
                                   "(with --then: how often the chained answer matches the folder name)")
    p.add_argument("--model", type=Path, required=True, help="a detection .onnx file or a pipeline .json")
    p.add_argument("data", type=Path, help="images with VOC .xml beside them, or images/ + labels/ (YOLO)")
    p.add_argument("--rename", action="append", default=[], metavar="PATTERN:CLASS",
                   help="map box names to the model's classes, e.g. '*-hand:hand' (repeatable)")
    _add_chain_args(p)
    _add_runner_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="per-stage timings, throughput and memory per provider and precision")
    p.add_argument("--model", type=Path, required=True,
                   help="the float32 .onnx (NAME.int8/.fp16.onnx beside it join), or a pipeline .json (its chain)")
    p.add_argument("--providers", help="e.g. 'trt,cuda,cpu': each is measured on its own (default: all available)")
    p.add_argument("--source", help="frames to use (a video, folder, camera...); default: a synthetic 640x480 scene")
    p.add_argument("--frames", type=int, default=100, help="frames per measurement")
    p.add_argument("--warmup", type=int, default=10, help="runs before timing (TensorRT builds its engine here)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_camera_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("doctor", help="what this machine can run (OpenCV, onnxruntime providers, GPU libraries, "
                                     "cameras, display), with fixes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("info", help="a model's spec, inputs, outputs, opset and size")
    p.add_argument("model", type=Path,
                   help="an edgevision or Ultralytics .onnx file, or a pipeline .json (each of its models)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("collect", help="collect a dataset from a camera: class labels by key, points by click")
    add_collect_args(p, MODELS_DIR / "backbone.onnx")
    p.set_defaults(func=cmd_collect)

    add_dataset_commands(sub, say)
    add_model_commands(sub, say)

    from edgevision.training.options import add_train_args  # argparse only: no TensorFlow import

    p = sub.add_parser("train", help="train a model (Keras needs the 'train' extra; --head linear or knn does not)")
    add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export a training run to ONNX with a parity check (a Keras run needs 'train')")
    p.add_argument("run", type=Path, help="a run folder written by 'edgevision train'")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write, e.g. models/NAME.onnx")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; try 15 for JetPack 5)")
    p.add_argument("--batch", default="dynamic", help="'dynamic' (default) or a fixed batch size such as 1")
    p.add_argument("--atol", type=float, default=1e-3, help="parity: largest allowed |keras - onnx| (default 1e-3)")
    p.add_argument("--min-agreement", type=float, default=1.0,
                   help="parity: smallest allowed top-1 agreement (default 1.0)")
    p.add_argument("--parity-images", type=int, default=64, help="validation images used for the parity check")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--int8", action="store_true", help="also write OUT.int8.onnx: static INT8 (QDQ) for TensorRT")
    p.add_argument("--calib", type=Path, metavar="DIR", help="--int8 calibration images (default: the run's data)")
    p.add_argument("--calib-images", type=int, default=200, help="at most this many calibration images")
    p.add_argument("--calib-method", default="percentile", choices=["percentile", "minmax", "entropy"],
                   help="INT8 calibration (default percentile: it measured best here)")
    p.add_argument("--fp16", action="store_true", help="also write OUT.fp16.onnx: float16 for GPUs")
    p.add_argument("--max-loss", type=float, default=0.01,
                   help="refuse a variant losing more than this (of accuracy, NME, mean IoU or AP50); default 0.01")
    p.add_argument("--force", action="store_true",
                   help="export even a model that never gets a class right on val (refused otherwise; the card "
                        "says so)")
    p.add_argument("--card-only", action="store_true",
                   help="only rewrite OUT's model card from the run folder (its config may have new notes)")
    p.set_defaults(func=cmd_export)
    for command in sub.choices.values():  # each command's --help starts with what it does
        command.description = command.description or next(a.help for a in sub._choices_actions
                                                          if a.dest == command.prog.split()[-1])
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    from edgevision.camera.capture import check_output_folders  # the parser's own module: no heavy import
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # no command: say which there are
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # 'kill' stops a run as cleanly as Ctrl-C
    quiet_native_logs()  # before the first video opens: OpenCV's and FFmpeg's own lines stay out of the terminal
    try:
        check_output_folders(args)  # --record, --jsonl, --masks, --draw, --live-head-out of every command
        return args.func(args)
    except UserError as exc:
        say(f"error: {exc}")
        return getattr(exc, "exit_code", 2)  # 3: a live source was lost (see the README's exit codes)
    except KeyboardInterrupt as exc:
        say("stopped (SIGTERM)" if isinstance(exc, Terminated) else "stopped (Ctrl-C)")
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # e.g. 'edgevision predict ... | head'
        sys.stderr.close()
        return 0
    except OSError as exc:  # a full disk, a read-only folder, a name too long: one line, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        say(f"error: {exc.strerror or exc}{where}")
        return 2


if __name__ == "__main__":
    sys.exit(main())

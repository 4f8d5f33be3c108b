"""Camera controls (and the live loop's command-line options, parsed before any heavy import): capture
size, frame rate, pixel format and flip, for V4L2 webcams, Jetson CSI
cameras (carried into the GStreamer pipeline) and every other source (flip only).

Asking for a size or rate a camera does not give is said in one line, never silently changed;
asking for a control a source cannot take (a frame rate for a video file) is an error. OpenCV is
imported where it is used, so that the CLI's parser (which adds these flags) starts without it."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ..deploy.errors import UserError, shell_quote

FlipMode = Literal["none", "horizontal", "vertical", "rotate-180"]
FLIPS: tuple[str, ...] = ("none", "horizontal", "vertical", "rotate-180")
CV_FLIP = {"horizontal": 1, "vertical": 0, "rotate-180": -1}
NVVIDCONV_FLIP = {"none": 0, "rotate-180": 2, "horizontal": 4, "vertical": 6}  # nvvidconv flip-method


@dataclass(frozen=True)
class CaptureOptions:
    """What to ask of a camera. None: the camera's own default."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    fourcc: str | None = None  # V4L2 pixel format, e.g. MJPG (USB webcams give 30 FPS at 720p only in MJPG)
    flip: FlipMode = "none"

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and not 16 <= value <= 8192:
                raise UserError(f"--{name} must be within 16..8192 pixels, got {value}")
        if (self.width is None) != (self.height is None):
            raise UserError("give --width and --height together")
        if self.fps is not None and not 0 < self.fps <= 1000:
            raise UserError(f"--fps must be within 0..1000, got {self.fps}")
        if self.fourcc is not None:
            code = self.fourcc.strip().upper()
            if len(code) != 4 or not code.isascii() or not code.isprintable():
                raise UserError(f"--fourcc takes four characters such as MJPG or YUYV, got {self.fourcc!r}")
            object.__setattr__(self, "fourcc", code)
        if self.flip not in FLIPS:
            raise UserError(f"--flip must be one of {', '.join(FLIPS)}, got {self.flip!r}")

    @property
    def controls(self) -> bool:
        """True when a size, rate or pixel format is asked for (not only a flip)."""
        return self.width is not None or self.fps is not None or self.fourcc is not None


def add_camera_args(p) -> None:
    """--width, --height, --fps, --fourcc, --flip on an argparse parser."""
    g = p.add_argument_group("camera controls")
    g.add_argument("--width", type=int, help="capture width in pixels (V4L2 and CSI cameras; with --height)")
    g.add_argument("--height", type=int, help="capture height in pixels")
    g.add_argument("--fps", type=float, help="capture frame rate (V4L2 and CSI cameras)")
    g.add_argument("--fourcc", metavar="MJPG", help="V4L2 pixel format, e.g. MJPG (30 FPS at 720p on most webcams)")
    g.add_argument("--flip", choices=FLIPS, default="none",
                   help="flip every frame (a camera mounted upside down: rotate-180); CSI cameras flip in nvvidconv")


def capture_from_args(args) -> CaptureOptions:
    return CaptureOptions(width=args.width, height=args.height, fps=args.fps, fourcc=args.fourcc, flip=args.flip)


def set_v4l2_controls(cap, options: CaptureOptions) -> str:
    """Ask a V4L2 capture for the pixel format, then the size and rate (in that order: a format change
    resets them); returns one line on what the camera gave, saying where it differs."""
    import cv2

    if options.fourcc:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*options.fourcc))
    if options.width is not None:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, options.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, options.height)
    if options.fps is not None:
        cap.set(cv2.CAP_PROP_FPS, options.fps)
    got_w, got_h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    got_fps = cap.get(cv2.CAP_PROP_FPS)
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    got_fourcc = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).strip("\x00") or "?"
    line = f"{got_w}x{got_h} at {got_fps:.0f} FPS, {got_fourcc}"
    asked = []
    if options.width is not None and (got_w, got_h) != (options.width, options.height):
        asked.append(f"{options.width}x{options.height}")
    if options.fps is not None and abs(got_fps - options.fps) > 0.5:
        asked.append(f"{options.fps:g} FPS")
    if options.fourcc and got_fourcc != options.fourcc:
        asked.append(options.fourcc)
    return line + (f" (asked for {', '.join(asked)}: the camera does not offer it)" if asked else "")


def csi_pipeline(sensor_id: int, options: CaptureOptions | None = None) -> str:
    """A Jetson CSI camera (nvarguscamerasrc) as an OpenCV GStreamer pipeline that drops stale frames;
    the size, rate and flip are done by the camera and nvvidconv."""
    o = options or CaptureOptions()
    width, height = (o.width, o.height) if o.width is not None else (1280, 720)
    fps = round(o.fps) if o.fps is not None else 30
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1,format=NV12 ! "
        f"nvvidconv flip-method={NVVIDCONV_FLIP[o.flip]} ! video/x-raw,format=BGRx ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )


def rtsp_hw_pipeline(url: str) -> str:
    """An RTSP H.264 stream decoded by a Jetson's hardware decoder (nvv4l2decoder)."""
    return (
        f"rtspsrc location={url} latency=200 ! rtph264depay ! h264parse ! nvv4l2decoder ! nvvidconv ! "
        "video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )


class FlippedSource:
    """Any source, its frames flipped (a camera mounted upside down or mirrored)."""

    def __init__(self, source, flip: FlipMode) -> None:
        self.source, self.code = source, CV_FLIP[flip]
        self.description = f"{source.description}, flipped {flip}"

    @property
    def skipped(self):
        return self.source.skipped

    def __getattr__(self, name: str):  # fps, live, dropped... of the wrapped source
        return getattr(self.source, name)

    def __iter__(self) -> Iterator:
        import cv2

        for frame in self.source:
            yield replace(frame, image=cv2.flip(frame.image, self.code))

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> FlippedSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SERVE_DEFAULTS = {"serve_token": None, "serve_allow_host": None, "serve_fps": 15.0,
                  "serve_quality": 70}  # the --serve options' defaults


def add_serve_args(p, what: str = "the annotated frames and results") -> None:
    """--serve [HOST:]PORT and its options: a web page for headless devices (camera/serve.py)."""
    g = p.add_argument_group("web page (headless devices)")
    g.add_argument("--serve", metavar="[HOST:]PORT",
                   help=f"serve {what} as a web page on this port (127.0.0.1 unless HOST is given, "
                        "e.g. 0.0.0.0:8080 for every interface)")
    g.add_argument("--serve-token", metavar="SECRET",
                   help="--serve: the secret every route needs (?token=SECRET in the printed URL, then a cookie; "
                        "or an X-Edgevision-Token header); default: a random one, printed")
    g.add_argument("--serve-allow-host", action="append", metavar="NAME",
                   help="--serve: another host name the browser may use for this device (a DNS name, a proxy's "
                        "name; repeat or separate by commas); loopback names and the --serve host always work")
    g.add_argument("--serve-fps", type=float, default=SERVE_DEFAULTS["serve_fps"],
                   help="--serve: most frames a second sent (default 15)")
    g.add_argument("--serve-quality", type=int, default=SERVE_DEFAULTS["serve_quality"],
                   help="--serve: JPEG quality 1..100 (default 70)")


def check_serve_args(args) -> None:
    """Serve options without --serve do nothing: an error, as for every flag that needs another."""
    if getattr(args, "serve", None) is None:
        for flag, default in SERVE_DEFAULTS.items():  # each against its own default (--serve-quality 15 too)
            if getattr(args, flag) != default:
                raise UserError(f"--{flag.replace('_', '-')} needs --serve [HOST:]PORT")


OUTPUT_FLAGS = ("record", "jsonl", "masks", "draw", "live_head_out")  # files, or folders (--masks, --draw)


def check_output_folders(args) -> None:
    """The folder each output goes into (--record, --jsonl, --live-head-out; for --masks DIR and --draw DIR,
    the folder holding DIR, which is made) must exist: a missing one is most often a typo or a drive
    that is not mounted, and making it quietly would write where nobody looks."""
    for name in OUTPUT_FLAGS:
        path = getattr(args, name, None)
        folder = None if path is None else Path(path).parent
        if folder is None or folder.is_dir():
            continue
        flag = "--" + name.replace("_", "-")
        if folder.exists():
            raise UserError(f"{flag} {path}: {folder} is a file, not a folder")
        raise UserError(f"{flag} {path}: the folder {folder} does not exist; create it first "
                        f"(mkdir -p {shell_quote(folder)}) or choose another place")


def add_loop_args(p) -> None:
    """The options of 'run' and 'demo': outputs, camera controls and what to do when a source is lost."""
    add_camera_args(p)
    add_serve_args(p)
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--display", dest="display", action="store_true", default=None,
                       help="show a window (default when a display exists)")
    shown.add_argument("--no-display", dest="display", action="store_false", help="run without a window")
    p.add_argument("--record", type=Path, metavar="OUT.mp4", help="write the frames with the overlay to a video")
    p.add_argument("--jsonl", type=Path, metavar="OUT.jsonl", help="write one JSON object per frame")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--loop", action="store_true", help="video files: start again at the end")
    p.add_argument("--background", metavar="blur|R,G,B|IMAGE",
                   help="segmentation models: blur or replace the background instead of tinting the mask")
    p.add_argument("--overwrite", action="store_true", help="replace existing --record/--jsonl files")
    g = p.add_argument_group("tracking and counting (detectors and chains)")
    g.add_argument("--track", action="store_true",
                   help="give each box an id that stays with the object from frame to frame (track_id)")
    g.add_argument("--count-line", action="append", metavar="[NAME=]X1,Y1,X2,Y2",
                   help="count tracks crossing this line, in and out per label, at each box's bottom-centre "
                        "(pixels; in: from its left to its right, seen from X1,Y1; repeatable)")
    g.add_argument("--zone", action="append", metavar="[NAME=]X,Y,X,Y,X,Y,...",
                   help="a polygon: count tracks inside it now, and in and out of it, per label (repeatable)")
    add_publish_args(p)
    g = p.add_argument_group("lost cameras and streams")
    g.add_argument("--reconnect", action=argparse.BooleanOptionalAction, default=None,
                   help="reopen a camera or stream that ends or stalls (default: on for cameras and streams)")
    g.add_argument("--stall-timeout", type=float, default=5.0, metavar="S",
                   help="a live source that sends no frame for this long is lost (default 5 s)")
    g.add_argument("--reconnect-timeout", type=float, default=30.0, metavar="S",
                   help="give up reconnecting after this long, exit code 3 (default 30 s)")


def add_publish_args(p) -> None:
    """--publish URL, --publish-every SECONDS, --publish-ca PEM: reporting to a broker (camera/publish.py)."""
    g = p.add_argument_group("reporting to an MQTT broker (needs the 'mqtt' extra: pip install 'edgevision[mqtt]')")
    g.add_argument("--publish", metavar="mqtt://[USER@]HOST[:PORT]/TOPIC",
                   help="send each frame's record as JSON at QoS 1 (mqtts:// for TLS; the password, if any, in "
                        "$EDGEVISION_MQTT_PASSWORD)")
    g.add_argument("--publish-every", type=float, metavar="SECONDS",
                   help="--publish: send the latest record (result and counts) this often instead of every frame")
    g.add_argument("--publish-ca", type=Path, metavar="CA.pem",
                   help="mqtts://: trust this CA certificate (default: the system's)")


def add_collect_args(p, backbone: Path) -> None:
    """The options of 'collect' (argparse only, like the rest of this module's flags)."""
    p.add_argument("data", type=Path, help="the dataset folder (created; resumed when it exists)")
    p.add_argument("--classes", help="class names, e.g. thumbs_up,thumbs_down (keys 1..9 save to them)")
    p.add_argument("--points", help="point names, e.g. nose or nose,left_eye,right_eye (click them in order)")
    p.add_argument("--source", default="0", help="as for 'run' (default: webcam 0)")
    p.add_argument("--split", metavar="val=0.2", help="keep a seeded share of saves in a validation folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation share")
    p.add_argument("--rate", type=float, default=2.0, help="auto-capture (Space) saves per second")
    p.add_argument("--review", action="store_true", help="step through saved images: delete or relabel")
    p.add_argument("--loop", action="store_true", help="a video file as --source: start again at its end (label "
                                                      "recorded footage for as long as you need)")
    p.add_argument("--live-head", choices=["knn"],
                   help="learn a kNN head from the photos as you save them and show its prediction; Enter exports "
                        "it (s saves)")
    p.add_argument("--backbone-onnx", type=Path, default=backbone,
                   help="--live-head: the feature backbone (default: the shipped models/backbone.onnx)")
    p.add_argument("--live-head-out", type=Path, metavar="OUT.onnx",
                   help="--live-head: where Enter exports it (default DATA/live_knn.onnx, then -2, -3... unless "
                        "--overwrite)")
    p.add_argument("--overwrite", action="store_true", help="--live-head: Enter replaces --live-head-out")
    add_camera_args(p)
    add_serve_args(p, "the live frame and the labelling buttons (no display needed)")

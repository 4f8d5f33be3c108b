"""``edgevision doctor``: what this machine can run, and the fix for each problem in one line."""

from __future__ import annotations

import base64
import ctypes
import glob
import importlib.metadata
import json
import os
import platform
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ..deploy.providers import jetson_model

# A 69-byte ONNX model (y = Relu(x), x: float[1, 4], IR 7, opset 13), so provider loading can be
# tried without the onnx package, which a Jetson runtime need not have.
TINY_MODEL = base64.b64decode(
    "CAc6OwoMCgF4EgF5IgRSZWx1EgFnWhMKAXgSDgoMCAESCAoCCAEKAggEYhMKAXkSDgoMCAESCAoCCAEKAggEQgQKABAN"
)
LIBRARIES = {
    "CUDA runtime": ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"),
    "cuBLAS": ("libcublas.so", "libcublas.so.13", "libcublas.so.12", "libcublas.so.11"),
    "cuDNN": ("libcudnn.so", "libcudnn.so.9", "libcudnn.so.8"),
    "TensorRT": ("libnvinfer.so", "libnvinfer.so.10", "libnvinfer.so.8"),
}


@dataclass(frozen=True)
class Check:
    area: str
    status: str  # "ok", "warn" or "fail"
    text: str
    fix: str = ""


def check_python() -> list[Check]:
    version = platform.python_version()
    checks = [Check("python", "ok" if sys.version_info >= (3, 10) else "fail",
                    f"Python {version} on {platform.machine()}",
                    "" if sys.version_info >= (3, 10) else "edgevision needs Python 3.10+ (JetPack 6)")]
    jetson = jetson_model()
    release = Path("/etc/nv_tegra_release")
    if jetson or release.exists():
        l4t = release.read_text(errors="replace").split(",")[0].strip() if release.exists() else "L4T unknown"
        checks.append(Check("platform", "ok", f"{jetson or 'Jetson'} ({l4t})"))
    return checks


NUMPY_ABI_FIX = ("this package was built against numpy 1.x: pip install 'numpy<2' (JetPack's OpenCV and NVIDIA's "
                 "onnxruntime-gpu wheels need it)")


def import_fix(package: str, exc: BaseException) -> str:
    """The one-line fix for a package that fails to import."""
    text = str(exc)
    if "_ARRAY_API" in text or "numpy.core.multiarray failed" in text or "compiled using NumPy 1.x" in text:
        return NUMPY_ABI_FIX
    return {
        "numpy": "pip install --force-reinstall 'numpy<2' (JetPack 6) or numpy (desktop)",
        "cv2": "JetPack: use its OpenCV (venv --system-site-packages); desktop: pip install opencv-python",
        "onnxruntime": "x86_64: pip install onnxruntime-gpu; Jetson: pip install onnxruntime-gpu --index-url "
                       "https://pypi.jetson-ai-lab.io/jp6/cu126 (see deploy/JETSON.md)",
    }.get(package, f"reinstall {package}")


def check_numpy() -> list[Check]:
    import numpy

    major = int(numpy.__version__.split(".")[0])
    checks = [Check("numpy", "ok", f"numpy {numpy.__version__}")]
    if major >= 2 and jetson_model():
        checks.append(Check("numpy", "warn", "numpy 2 on a Jetson: JetPack's OpenCV and NVIDIA's onnxruntime wheels "
                            "are built against numpy 1.x", "pip install 'numpy<2'"))
    return checks


def check_opencv() -> list[Check]:
    import cv2

    info = cv2.getBuildInformation()

    def flag(name: str) -> str:
        m = re.search(rf"{name}:\s*(\S+)", info)
        return m.group(1) if m else "NO"

    gui, gst, v4l = flag("GUI"), flag("GStreamer"), flag("v4l/v4l2")
    checks = [Check("opencv", "ok", f"OpenCV {cv2.__version__}: GUI {gui}, GStreamer {gst}, V4L2 {v4l}")]
    if gst.upper() != "YES":
        checks.append(Check("opencv", "warn", "no GStreamer: csi:// cameras and GStreamer pipelines cannot open",
                            "on a Jetson use JetPack's OpenCV (venv --system-site-packages, pip uninstall "
                            "opencv-python); USB webcams work without it"))
    if gui.upper() == "NONE":
        checks.append(Check("opencv", "warn", "OpenCV has no GUI (opencv-python-headless?): no windows",
                            "pip uninstall opencv-python-headless && pip install opencv-python, or run --no-display"))
    return checks


def check_onnxruntime() -> list[Check]:
    flavours = []
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            flavours.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import onnxruntime as ort
    except ImportError as exc:
        what = "is not installed" if not flavours else f"does not import: {str(exc).splitlines()[0][:200]}"
        return [Check("onnxruntime", "fail", f"onnxruntime {what}", import_fix("onnxruntime", exc))]
    checks = [Check("onnxruntime", "ok", f"{', '.join(flavours) or 'onnxruntime ' + ort.__version__}; "
                    f"providers in this build: {', '.join(ort.get_available_providers())}")]
    if len(flavours) > 1:
        checks.append(Check("onnxruntime", "fail", f"several onnxruntime packages at once ({', '.join(flavours)}): "
                            "they share one module and the last installed wins",
                            "pip uninstall -y " + " ".join(f.split()[0] for f in flavours) + " and install one"))
    return checks + check_providers(ort)


GPU_FIX = ("install the CUDA/cuDNN/TensorRT versions this onnxruntime-gpu was built for (JetPack brings them on a "
           "Jetson); on x86_64 CUDA and cuDNN can come from pip: pip install 'onnxruntime-gpu[cuda,cudnn]' "
           "(edgevision preloads them)")


def tensorrt_pip_fix() -> str:
    """A pip TensorRT (the tensorrt-cuNN-libs wheels) puts libnvinfer in site-packages/tensorrt_libs, where
    nothing looks: onnxruntime's TensorRT library has no RUNPATH and preload_dlls() loads CUDA and cuDNN
    only. Its folder must be on LD_LIBRARY_PATH before Python starts."""
    import importlib.util

    spec = importlib.util.find_spec("tensorrt_libs")
    folder = (list(spec.submodule_search_locations or []) or [""])[0] if spec else ""
    where = folder or "$(python -c 'import tensorrt_libs, os; print(os.path.dirname(tensorrt_libs.__file__))')"
    return f"; TensorRT from pip (pip install tensorrt): export LD_LIBRARY_PATH={where}:$LD_LIBRARY_PATH"


def check_providers(ort) -> list[Check]:
    """Open a session on each provider the build offers, with the options and cache folders a run uses
    (a TensorRT that loads bare but not with our engine cache would otherwise be called ready): what
    loads, and why not."""
    import tempfile

    from ..deploy.errors import UserError
    from ..deploy.providers import GPU_PROVIDERS, TRT, ProviderConfig, short_name
    from ..deploy.sessions import create_session, session_plan

    checks = []
    with tempfile.TemporaryDirectory(prefix="edgevision-doctor-") as tmp:
        model = Path(tmp) / "doctor.onnx"
        model.write_bytes(TINY_MODEL)
        for provider in ort.get_available_providers():
            name, gpu = short_name(provider), provider in GPU_PROVIDERS
            fix = (GPU_FIX + (tensorrt_pip_fix() if provider == TRT else "")) if gpu else "reinstall onnxruntime"
            try:
                plan = session_plan(ort, model, [provider], ProviderConfig(), None, asked=True)
                _, report = create_session(ort, plan)
            except UserError as exc:
                checks.append(Check("provider", "warn" if gpu else "fail", f"{name} does not load: {exc}", fix))
                continue
            if report.running != provider:
                checks.append(Check("provider", "warn" if gpu else "fail", f"{name} does not load: {report.reason}",
                                    fix))
                continue
            checks.append(Check("provider", "ok", f"{name} loads"))
            if report.note:
                checks.append(Check("provider", "warn", report.note,
                                    "make that folder writable, or point EDGEVISION_CACHE at one that is"))
    return checks


def find_library(names: tuple[str, ...]) -> str:
    for name in names:
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    return ""


def check_libraries() -> list[Check]:
    from ..deploy.providers import gpu_name, tensorrt_version

    gpu, trt = gpu_name(), tensorrt_version()
    checks = [Check("gpu", "ok" if gpu != "none" else "warn", f"GPU: {gpu}; TensorRT library version: {trt}",
                    "" if gpu != "none" else "no NVIDIA GPU seen: models run on the CPU provider")]
    for what, names in LIBRARIES.items():
        found = find_library(names)
        checks.append(Check("library", "ok" if found else "warn", f"{what}: {found or 'not found'}",
                            "" if found else "needed only for GPU providers; on a Jetson it comes with JetPack"))
    return checks


def check_cameras() -> list[Check]:
    devices = sorted(glob.glob("/dev/video*"))
    checks = [Check("camera", "ok" if devices else "warn", f"video devices: {', '.join(devices) or 'none'}",
                    "" if devices else "plug in a USB camera (then ls /dev/video*), or use a video file as --source")]
    if jetson_model():
        argus = any(Path(p).exists() for p in ("/usr/sbin/nvargus-daemon", "/usr/bin/nvargus-daemon"))
        checks.append(Check("camera", "ok" if argus else "warn",
                            f"nvargus-daemon (CSI cameras): {'present' if argus else 'not found'}",
                            "" if argus else "CSI cameras need JetPack's nvargus-daemon"))
    return checks


def check_display() -> list[Check]:
    from .sinks import display_available

    if display_available():
        return [Check("display", "ok", f"a window can open (DISPLAY={os.environ.get('DISPLAY', '')})")]
    return [Check("display", "warn", "no display: windows cannot open",
                  "watch and label in a browser (run/collect --serve 8080), or --no-display with --record/--jsonl, "
                  "or set DISPLAY (ssh -X, or export DISPLAY=:0)")]


GROUPS = (("python", None, "check_python"), ("numpy", "numpy", "check_numpy"), ("opencv", "cv2", "check_opencv"),
          ("onnxruntime", "onnxruntime", "check_onnxruntime"), ("gpu", None, "check_libraries"),
          ("camera", None, "check_cameras"), ("display", None, "check_display"))


def run_checks() -> list[Check]:
    """Every check; one that breaks (a package that will not import, say) becomes a 'fail' line with
    its fix instead of a traceback."""
    checks: list[Check] = []
    for area, package, name in GROUPS:
        try:
            checks += globals()[name]()
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            what = f"{package} does not import" if package else f"the {area} check failed"
            missing = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
            checks.append(Check(area, "fail", f"{what}: {type(exc).__name__}: {first}",
                                import_fix(package or missing or area, exc)))
    return checks


def verdict(checks: list[Check]) -> str:
    """One line: what this machine is ready for, or what blocks it."""
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        first = failed[0]
        return f"not ready: {first.text}" + (f" (fix: {first.fix})" if first.fix else "")
    loads = {c.text.split()[0] for c in checks if c.area == "provider" and c.status == "ok"}
    if {"TensorRT", "CUDA"} <= loads:
        return "ready for CUDA and TensorRT (and the CPU)"
    if "CUDA" in loads:
        return "ready for CUDA (TensorRT does not load: see above) and the CPU"
    if "CPU" in loads:
        return "ready for CPU (no GPU provider loads here)"
    return "not ready: no onnxruntime provider loads"


def doctor_from_args(args) -> int:
    checks = run_checks()
    line = verdict(checks)
    if args.json:
        print(json.dumps({"checks": [asdict(c) for c in checks], "verdict": line}, indent=2))
    else:
        for c in checks:
            print(f"{c.status:<4}  {c.area:<11} {c.text}")
            if c.fix:
                print(f"{'':<17}fix: {c.fix}")
        print(f"verdict: {line}")
    return 1 if any(c.status == "fail" for c in checks) else 0

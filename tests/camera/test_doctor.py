import json

import onnxruntime as ort
from edgevision.camera import doctor
from test_cli import HEADLESS, edgevision


def test_doctor_json_reports_every_area_and_exits_zero_on_a_working_runtime():
    proc = edgevision("doctor", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    checks = report["checks"]
    assert report["verdict"].startswith("ready for")
    areas = {c["area"] for c in checks}
    assert {"python", "numpy", "opencv", "onnxruntime", "provider", "gpu", "library", "camera", "display"} <= areas
    cpu = [c for c in checks if c["area"] == "provider" and c["text"].startswith("CPU")]
    assert cpu and cpu[0]["status"] == "ok"
    assert all(c["fix"] for c in checks if c["status"] != "ok")  # every problem comes with its fix
    assert "DISPLAY" not in HEADLESS and any(c["area"] == "display" and c["status"] == "warn" for c in checks)


def test_the_embedded_tiny_model_runs_without_the_onnx_package():
    session = ort.InferenceSession(doctor.TINY_MODEL, providers=["CPUExecutionProvider"])
    import numpy as np

    out = session.run(None, {"x": np.array([[-1, 2, -3, 4]], np.float32)})[0]
    assert out.tolist() == [[0, 2, 0, 4]]


def test_a_provider_that_cannot_load_is_reported_with_its_reason(monkeypatch):
    from edgevision.deploy import providers

    monkeypatch.setattr(providers, "no_gpu_here", lambda: False)  # a GPU without cuDNN

    class NoCuda:
        SessionOptions = ort.SessionOptions

        @staticmethod
        def get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        @staticmethod
        def InferenceSession(model, so, providers, provider_options, **kwargs):
            if providers[0] == "CUDAExecutionProvider":
                import os

                os.write(2, b"libcudnn.so.9: cannot open shared object file\n")
            return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    checks = doctor.check_providers(NoCuda)
    assert [(c.status, c.text) for c in checks] == [
        ("warn", "CUDA does not load: libcudnn.so.9 not found"),
        ("ok", "CPU loads"),
    ]
    assert "CUDA/cuDNN/TensorRT" in checks[0].fix


def test_two_onnxruntime_packages_at_once_is_a_failure_with_the_fix(monkeypatch):
    real = doctor.importlib.metadata.version

    def version(dist):
        return "1.0" if dist == "onnxruntime" else real(dist)

    monkeypatch.setattr(doctor.importlib.metadata, "version", version)
    checks = doctor.check_onnxruntime()
    failed = [c for c in checks if c.status == "fail"]
    assert failed and "last installed wins" in failed[0].text and "pip uninstall" in failed[0].fix


def test_doctor_survives_broken_imports_and_ends_with_a_verdict(tmp_path):
    """numpy 2 beside a numpy-1 OpenCV (JetPack) and a missing onnxruntime: fails with fixes, no traceback."""
    (tmp_path / "cv2.py").write_text("raise AttributeError('_ARRAY_API not found')\n")
    (tmp_path / "onnxruntime.py").write_text("raise ImportError('libonnxruntime.so: cannot open shared object')\n")
    env = {**HEADLESS, "PYTHONPATH": str(tmp_path)}
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "edgevision", "doctor"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "cv2 does not import: AttributeError: _ARRAY_API not found" in proc.stdout
    assert "pip install 'numpy<2'" in proc.stdout and "onnxruntime " in proc.stdout and "jetson-ai-lab" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("verdict: not ready: cv2 does not import")

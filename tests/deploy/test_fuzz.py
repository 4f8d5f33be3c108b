"""A seeded, time-bounded fuzzer: mutated model files, mutated specs and mutated image files must
either work or fail with a UserError (one line for the user), never another exception."""

from __future__ import annotations

import json
import random
import time

import cv2
import numpy as np
import pytest
import tinymodels
from edgevision.deploy.errors import UserError
from edgevision.deploy.images import read_image
from edgevision.deploy.onnxmeta import read_header
from edgevision.deploy.runner import Runner, RunnerOptions

BUDGET_S = 4.0  # per test: bounded, whatever the machine


def _mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        what = rng.random()
        i = rng.randrange(len(data))
        if what < 0.5:
            data[i] = rng.randrange(256)
        elif what < 0.75:
            del data[i: i + rng.randint(1, 16)]
        else:
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(data)


@pytest.mark.parametrize("kind", ["classify", "detect"])
def test_mutated_model_files_load_or_fail_with_a_user_error(tmp_path, kind):
    good = tinymodels.save(kind, tmp_path / "good.onnx").read_bytes()
    rng, path, start, tried = random.Random(kind), tmp_path / "m.onnx", time.monotonic(), 0
    while time.monotonic() - start < BUDGET_S and tried < 2000:
        path.write_bytes(_mutate(good, rng))
        tried += 1
        try:
            read_header(path)
            Runner(path, RunnerOptions(providers="cpu"))(np.zeros((20, 30, 3), np.uint8))
        except UserError:
            pass
    assert tried >= 20


SPEC_VALUES = [None, 0, -1, 1.5, "", "x", [], [0], [1, 2, 3], {}, {"a": 1}, True, "RGB", "letterbox", [8, 8],
               ["a", "a"], ["a"], 1e9, "detect", "segment"]


def test_mutated_specs_load_or_fail_with_a_user_error(tmp_path):
    rng, start, tried = random.Random(1), time.monotonic(), 0
    keys = ["kind", "input_hw", "labels", "color", "mean", "std", "resize", "output", "score_threshold",
            "iou_threshold", "version", "extra"]
    while time.monotonic() - start < BUDGET_S and tried < 2000:
        kind = rng.choice(["classify", "keypoints", "segment", "detect"])
        spec = {k: rng.choice(SPEC_VALUES) for k in rng.sample(keys, rng.randint(1, 4))}
        path = tinymodels.save(kind, tmp_path / f"{tried}.onnx", spec=spec)
        tried += 1
        try:
            runner = Runner(path, RunnerOptions(providers="cpu"))
            json.dumps(runner(np.zeros((20, 30, 3), np.uint8)).to_dict())
        except UserError:
            pass
    assert tried >= 20


def test_mutated_images_decode_or_are_skipped(tmp_path):
    ok, good = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    png = cv2.imencode(".png", np.zeros((10, 10, 3), np.uint8))[1].tobytes()
    rng, start, tried = random.Random(2), time.monotonic(), 0
    runner = Runner(tinymodels.save("segment", tmp_path / "s.onnx"), RunnerOptions(providers="cpu"))
    while time.monotonic() - start < BUDGET_S and tried < 2000:
        path = tmp_path / f"{tried}.jpg"
        path.write_bytes(_mutate(rng.choice([good.tobytes(), png]), rng))
        tried += 1
        image = read_image(path)
        if image is not None:
            assert image.ndim == 3 and image.dtype == np.uint8
            runner(image)
    assert tried >= 50

"""The models in models/: each loads, carries its spec and card, and matches its card on val/."""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, needs_shared
from edgevision.camera.predict import predict
from edgevision.deploy.images import collect_images
from edgevision.deploy.runner import Runner, RunnerOptions

SHIPPED = {
    "thumbs": ("thumbs_down", "thumbs_up"),
    "thumbs_hand": ("thumbs_down", "thumbs_up"),
    "emotions": ("happy", "sad"),
    "fingers": ("0", "1", "2", "3", "4", "5"),
}
PIPELINES = ("thumbs_chain.json", "fingers_chain.json", "emotions_chain.json", "nose_chain.json")
CLASSIFY_PIPELINES = PIPELINES[:3]  # scored by predict against the folder name (the README table)
CARD_ACCURACY = re.compile(r"Validation accuracy \(onnxruntime, val/\): \*\*([0-9.]+)\*\* on (\d+) images")


def card_accuracy(name: str) -> tuple[float, int]:
    m = CARD_ACCURACY.search((REPO / "models" / f"{name}.md").read_text())
    assert m, f"models/{name}.md states no validation accuracy"
    return float(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_model_has_its_spec_card_and_a_small_file(name):
    path = REPO / "models" / f"{name}.onnx"
    runner = Runner(path, RunnerOptions(providers="cpu"))
    assert runner.spec.kind == "classify" and runner.spec.labels == SHIPPED[name]
    assert path.stat().st_size < 12e6
    card = (REPO / "models" / f"{name}.md").read_text()
    assert "licence" in card and "CPU latency" in card and "edgevision train --config" in card
    result = runner(np.full((240, 320, 3), 128, np.uint8))
    assert abs(float(result.probs.sum()) - 1.0) < 1e-4


CARD_NME = re.compile(r"Validation NME \(onnxruntime, val/\): \*\*([0-9.]+)\*\* mean")


def test_shipped_nose_model_returns_a_named_point_inside_a_non_square_frame():
    runner = Runner(REPO / "models" / "nose.onnx", RunnerOptions(providers="cpu"))
    assert runner.spec.kind == "keypoints" and runner.spec.labels == ("nose",)
    card = (REPO / "models" / "nose.md").read_text()
    assert "licence" in card and "edgevision train --config nose" in card and CARD_NME.search(card)
    (x, y), = runner(np.full((300, 500, 3), 128, np.uint8)).xy
    assert 0 <= x <= 500 and 0 <= y <= 300


@needs_shared()
@pytest.mark.shared
def test_the_nose_model_matches_the_nme_in_its_card_on_val():
    from edgevision.deploy.tasks.keypoints import keypoint_metrics
    from edgevision.training.keypoints import find_point_dataset

    expected = float(CARD_NME.search((REPO / "models" / "nose.md").read_text()).group(1))
    _, val = find_point_dataset(SHARED_DATA / "nose", ("nose",), 0.2, 0)
    runner = Runner(REPO / "models" / "nose.onnx", RunnerOptions(providers="cpu"))
    from edgevision.deploy.images import read_image

    pred = np.stack([runner(read_image(p)).xy for p in val.paths])
    metrics = keypoint_metrics(pred, val.points, val.norm, ("nose",), val.norm_kind)
    assert val.norm_kind == "inter-ocular" and len(val.paths) == 56
    assert metrics["nme_mean"] == pytest.approx(expected, abs=1e-4)


def card_source_accuracy(name: str, source: str) -> tuple[float, int]:
    """A row of the card's 'per data source' table (models trained on more than one folder)."""
    card = (REPO / "models" / f"{name}.md").read_text()
    m = re.search(rf"\| `{re.escape(source)}` \| ([0-9.]+) \| (\d+) \|", card)
    assert m, f"models/{name}.md has no row for {source}"
    return float(m.group(1)), int(m.group(2))


@needs_shared()
@pytest.mark.shared
@pytest.mark.parametrize("name", ["thumbs", "emotions", "fingers"])
def test_predict_over_val_matches_the_accuracy_in_the_card(name):
    expected, count = (card_source_accuracy(name, f"../shared/data/{name}") if name in ("fingers", "emotions")
                       else card_accuracy(name))
    runner = Runner(REPO / "models" / f"{name}.onnx", RunnerOptions(providers="cpu"))
    report = predict(runner, collect_images([str(SHARED_DATA / name / "val")]), io.StringIO(), batch_size=16)
    assert report.scored == count
    assert report.accuracy == pytest.approx(expected, abs=1e-4)


@needs_shared()
@pytest.mark.shared
def test_the_finger_counter_matches_its_card_on_hand_crops_cut_as_the_chain_cuts_them(tmp_path):
    from edgevision.training.crops import write_crops

    expected, count = card_source_accuracy("fingers", "runs/hand_crops")
    write_crops(SHARED_DATA / "hands_webcam", tmp_path / "crops", r"(\d)-hand", jitter=0, log=lambda _: None)
    runner = Runner(REPO / "models" / "fingers.onnx", RunnerOptions(providers="cpu"))
    report = predict(runner, collect_images([str(tmp_path / "crops" / "val")]), io.StringIO(), batch_size=16)
    assert report.scored == count
    assert report.accuracy == pytest.approx(expected, abs=1e-4)


@needs_shared()
@pytest.mark.shared
def test_the_thumbs_hand_classifier_matches_its_card_on_the_squared_hagrid_crops(tmp_path):
    from edgevision.training.crops import write_crops

    expected, count = card_source_accuracy("thumbs_hand", "runs/thumbs_hagrid_sq")
    write_crops(SHARED_DATA / "thumbs_hagrid_crops", tmp_path / "sq", None, jitter=0, boxes="whole",
                log=lambda _: None)
    runner = Runner(REPO / "models" / "thumbs_hand.onnx", RunnerOptions(providers="cpu"))
    report = predict(runner, collect_images([str(tmp_path / "sq" / "val")]), io.StringIO(), batch_size=16)
    assert report.scored == count
    assert report.accuracy == pytest.approx(expected, abs=1e-4)


README_CHAIN = re.compile(r"\| `models/(\w+_chain\.json)` \| `([\w/]+)` \| \*\*([0-9.]+)%\*\* of (\d+) \|")


def test_the_pipeline_files_name_shipped_models():
    import edgevision

    for name in PIPELINES:
        pipeline = edgevision.read_pipeline(REPO / "models" / name)
        assert pipeline.model.is_file() and pipeline.then.is_file()
        card = REPO / "models" / name.replace(".json", ".md")
        if card.is_file():  # the face chains: the values their card measured and states
            stated = json.loads(re.search(r"\| pipeline \| `(\{.*\})` \|", card.read_text()).group(1))
            assert (stated["score_threshold"], stated["crop_margin"]) == (pipeline.score_threshold,
                                                                         pipeline.crop_margin), name
            assert (stated["model"], stated["then"]) == (pipeline.model.name, pipeline.then.name)
        else:  # the hand chains: the threshold the README's paragraph on them states
            assert pipeline.score_threshold == 0.25
        assert edgevision.load(REPO / "models" / name, providers="cpu").kind == "chain"


@needs_shared()
@pytest.mark.shared
def test_the_chains_answer_the_val_photos_as_the_readme_table_says():
    import edgevision

    rows = README_CHAIN.findall((REPO / "README.md").read_text())
    assert {r[0] for r in rows} == set(CLASSIFY_PIPELINES), "the README's table of chain answers is missing a pipeline"
    models = {name: edgevision.load(REPO / "models" / name, providers="cpu") for name in CLASSIFY_PIPELINES}
    for name, folder, percent, count in rows:
        report = predict(models[name].runner, collect_images([str(SHARED_DATA / folder)]), io.StringIO(),
                         batch_size=8)
        assert report.scored == int(count), (name, folder)
        assert 100 * report.accuracy == pytest.approx(float(percent), abs=0.05), (name, folder)


README_NOSE_CHAIN = re.compile(r"\| `models/nose_chain\.json` \| `nose/val` \| NME \*\*([0-9.]+)\*\* "
                               r"\(([0-9.]+)% under 0\.1\) of (\d+) \|")


def nose_chain_nme(model, folder: Path) -> list[float]:
    """Per photo: the distance from the chain's nose (on the most confident face) to the labelled one over the
    outer eye corners' distance (iBUG points 36 and 45), as models/nose.md measures NME; no face = 1.0."""
    import csv

    truth = {r["file"]: (float(r["nose_x"]), float(r["nose_y"])) for r in csv.DictReader(open(folder / "labels.csv"))}
    eyes = {r["file"]: np.array([[float(r["x36"]), float(r["y36"])], [float(r["x45"]), float(r["y45"])]])
            for r in csv.DictReader(open(folder / "landmarks68.csv"))}
    out = []
    for name, xy in sorted(truth.items()):
        found = model(cv2.imread(str(folder / "images" / name))).to_dict()["detections"]
        if not found:
            out.append(1.0)
            continue
        nose = max(found, key=lambda d: d["score"])["then"]["points"]["nose"]
        out.append(float(np.hypot(nose[0] - xy[0], nose[1] - xy[1]) / np.linalg.norm(eyes[name][0] - eyes[name][1])))
    return out


@needs_shared()
@pytest.mark.shared
def test_the_nose_chain_places_the_nose_on_val_as_the_readme_says():
    import edgevision

    (mean, share, count), = README_NOSE_CHAIN.findall((REPO / "README.md").read_text())
    nme = nose_chain_nme(edgevision.load(REPO / "models" / "nose_chain.json", providers="cpu"),
                         SHARED_DATA / "nose" / "val")
    assert len(nme) == int(count)
    assert np.mean(nme) == pytest.approx(float(mean), abs=5e-5)
    assert 100 * np.mean(np.array(nme) < 0.1) == pytest.approx(float(share), abs=0.05)


@pytest.mark.parametrize("project", ["emotions", "nose"])
def test_the_face_demos_find_the_face_in_the_sample_clip_and_answer_on_it(tmp_path, project):
    """Another person, room and camera than any training photo: the most confident box of each frame is the
    face (its centre inside the head region of the clip's person), and the answer is the project's."""
    out = tmp_path / "demo.jsonl"
    proc = subprocess.run([sys.executable, "-m", "edgevision.cli", "demo", project, "--source",
                           str(REPO / "camera" / "samples" / "thumbs_demo.mp4"), "--jsonl", str(out),
                           "--max-frames", "96", "--no-display"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line)["result"] for line in out.read_text().splitlines()]
    assert len(records) == 96
    for r in records[::12]:  # one frame of each photo in the clip
        top = max(r["detections"], key=lambda d: d["score"])
        x0, y0, x1, y1 = top["xyxy"]
        assert 120 < (x0 + x1) / 2 < 360 and 60 < (y0 + y1) / 2 < 260 and 30 < x1 - x0 < 160, top
        if project == "emotions":
            assert top["then"]["label"] in ("happy", "sad")
        else:
            (nx, ny), = top["then"]["points"].values()
            assert x0 <= nx <= x1 and y0 <= ny <= y1, top  # the nose inside the face box


def test_demo_without_a_camera_says_so_and_runs_the_sample_clip(tmp_path):
    out = tmp_path / "demo.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run(
        [sys.executable, "-m", "edgevision.cli", "demo", "--jsonl", str(out), "--max-frames", "60"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    if Path("/dev/video0").exists():
        pytest.skip("this machine has a camera: the demo would use it")
    assert proc.returncode == 0, proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if "no camera found" in ln]) == 1
    assert "thumbs_demo.mp4" in proc.stderr and "then thumbs_hand.onnx" in proc.stderr  # the thumbs chain
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 60 and all(r["result"]["task"] == "chain" for r in records)


DETECTORS = {"raccoon": ("raccoon",), "hands": ("hand",), "faces": ("face",)}
CARD_AP50 = re.compile(r"Validation AP50 \(onnxruntime, val/\): \*\*([0-9.]+)\*\* on (\d+)")


def sample_frame() -> np.ndarray:
    """The first frame of the shipped sample clip: a person showing a thumb, 640x480."""
    cap = cv2.VideoCapture(str(REPO / "camera" / "samples" / "thumbs_demo.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return frame


@pytest.mark.parametrize("name", list(DETECTORS))
def test_shipped_detectors_have_their_spec_card_and_boxes_inside_the_frame(name):
    runner = Runner(REPO / "models" / f"{name}.onnx", RunnerOptions(providers="cpu", score_threshold=0.01))
    assert runner.spec.kind == "detect" and runner.spec.labels == DETECTORS[name]
    assert runner.spec.resize == "letterbox"
    card = (REPO / "models" / f"{name}.md").read_text()
    assert "licence" in card and f"edgevision train --config {name}" in card and CARD_AP50.search(card)
    found = runner(sample_frame()[:, :400])  # non-square
    assert len(found) >= 1
    assert (found.xyxy >= 0).all() and (found.xyxy[:, [0, 2]] <= 400).all() and (found.xyxy[:, [1, 3]] <= 480).all()




def test_the_hand_detector_finds_the_hand_in_the_sample_clip():
    """Another person, room and camera than its training photos (the thumbs set), a sideways fist."""
    found = Runner(REPO / "models" / "hands.onnx", RunnerOptions(providers="cpu"))(sample_frame())
    assert len(found) >= 1, "no hand in a frame where one shows a thumb"


@needs_shared()
@pytest.mark.shared
@pytest.mark.parametrize("name", list(DETECTORS))
def test_eval_over_val_matches_the_ap50_in_the_card(name):
    from edgevision.deploy.evaluate import evaluate_boxes

    m = CARD_AP50.search((REPO / "models" / f"{name}.md").read_text())
    expected, count = float(m.group(1)), int(m.group(2))
    runner = Runner(REPO / "models" / f"{name}.onnx", RunnerOptions(providers="cpu", score_threshold=0.01))
    if name in ("hands", "faces"):  # trained on several sets: each public one against its row of the card (Keras)
        card = (REPO / "models" / f"{name}.md").read_text()
        for folder in {"hands": ("hands_webcam", "fingers_hagrid"), "faces": ("faces",)}[name]:
            row = re.search(rf"\| `\.\./shared/data/{folder}` \| ([0-9.]+) \| [0-9.]+ \| (\d+) \|", card)
            rename = ("*-hand:hand", "[0-5]:hand") if name == "hands" else ()
            report = evaluate_boxes(runner, SHARED_DATA / folder / "val", rename, 0.4)
            assert report["images"] == int(row.group(2))
            assert report["map50"] == pytest.approx(float(row.group(1)), abs=2e-3)  # Keras vs onnxruntime
        return
    report = evaluate_boxes(runner, SHARED_DATA / "raccoon" / "val", (), runner.spec.score_threshold)
    assert report["images"] == count
    assert report["map50"] == pytest.approx(expected, abs=1e-4)


REFUSED_VARIANTS = {("faces", "int8")}  # lost more than 0.01 AP50 at export (the card's precision table says so)
VARIANTS = [(n, v) for n in [*SHIPPED, "nose", "person_seg", *DETECTORS] for v in ("int8", "fp16")
            if (n, v) not in REFUSED_VARIANTS]


@pytest.mark.parametrize(("name", "variant"), VARIANTS)
def test_shipped_precision_variants_carry_the_same_spec_and_agree_on_a_photo_like_frame(name, variant):
    options = RunnerOptions(providers="cpu", score_threshold=0.01)
    base = Runner(REPO / "models" / f"{name}.onnx", options)
    other = Runner(REPO / "models" / f"{name}.{variant}.onnx", options)
    assert other.spec == base.spec
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (31, 31), 8)
    if base.spec.kind == "detect":
        frame = sample_frame()
    a, b = base(frame), other(frame)
    if base.spec.kind == "detect":  # every cell's score (the best box may flip between near-ties)
        from edgevision.deploy.ops import preprocess

        batch, _ = preprocess([frame], base.spec)
        scores = [r.session.run(["scores"], {r.input_name: batch})[0] for r in (base, other)]
        assert np.abs(scores[0] - scores[1]).max() < 0.15  # measured: INT8 0.08, FP16 0.005
    elif base.spec.kind == "keypoints":
        assert np.abs(a.xy - b.xy).max() < 15  # pixels in a 320x240 frame
    elif base.spec.kind == "segment":
        assert (a.class_map == b.class_map).mean() > 0.95
    else:
        # measured up to 0.17 (INT8) on frames unlike the training photos; the accuracy change on val is in the card
        assert np.abs(a.probs - b.probs).max() < 0.25
    card = (REPO / "models" / f"{name}.md").read_text()
    assert f"`{name}.{variant}.onnx`" in card


def test_models_folder_holds_only_shipped_models_their_variants_and_cards():
    expected = {f"{name}{suffix}" for name in [*SHIPPED, "nose", "person_seg", *DETECTORS]
                for suffix in (".onnx", ".md")}
    expected |= {f"{name}.{variant}{suffix}" for name, variant in VARIANTS for suffix in (".onnx", ".md")}
    expected |= set(PIPELINES) | {"emotions_chain.md", "nose_chain.md"}  # the face chains' cards
    expected |= {"backbone.onnx", "backbone.md"}  # the feature backbone of the numpy heads
    assert {p.name for p in (REPO / "models").iterdir()} == expected


def test_the_shipped_backbone_carries_its_spec_and_card_and_takes_any_size():
    from edgevision.deploy.embed import Backbone

    path = REPO / "models" / "backbone.onnx"
    card = (REPO / "models" / "backbone.md").read_text()
    assert f"{path.stat().st_size / 1e6:.1f} MB" in card and "Apache" in card
    frame = np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    for size in (160, 224):
        backbone = Backbone(path, size, RunnerOptions(providers="cpu"))
        assert backbone.spec.dim == 1280 and backbone.spec.input_hw == (size, size)
        features = backbone([frame, frame])
        assert features.shape == (2, 1280) and (features >= 0).all()  # pooled ReLU6 outputs


CARD_MIOU = re.compile(r"Validation mean IoU \(onnxruntime, val/\): \*\*([0-9.]+)\*\*")


@needs_shared()
@pytest.mark.shared
def test_the_person_segmenter_matches_the_mean_iou_in_its_card_on_val():
    from edgevision.deploy.images import read_image
    from edgevision.deploy.tasks.segment import iou_metrics
    from edgevision.training.segmentation import find_seg_dataset

    expected = float(CARD_MIOU.search((REPO / "models" / "person_seg.md").read_text()).group(1))
    _, val = find_seg_dataset(SHARED_DATA / "person_seg", {0: 1}, 0.2, 0)
    runner = Runner(REPO / "models" / "person_seg.onnx", RunnerOptions(providers="cpu"))
    assert runner.spec.kind == "segment" and len(val.images) == 21
    pred = [runner(read_image(p)).class_map for p in val.images]
    assert iou_metrics(pred, list(val.masks), runner.spec.labels)["miou"] == pytest.approx(expected, abs=1e-4)

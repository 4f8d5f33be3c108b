"""The numpy heads (kNN, linear), their ONNX graphs against them, the joined model, and LiveKnn."""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import tinymodels
from edgevision.deploy.embed import Backbone, FeatureCache, read_backbone_spec
from edgevision.deploy.errors import UserError
from edgevision.deploy.heads import KnnHead, fit_knn, fit_linear, head_graph, join
from edgevision.deploy.liveknn import LiveKnn
from edgevision.deploy.runner import Runner, RunnerOptions

CLASSES = ("a", "b", "c")
CLASSES_RGB = ("blue", "green", "red")  # tinymodels.colour_photos' folders, sorted


def blobs(n_per_class: int, dim: int = 16, spread: float = 0.3, seed: int = 0):
    """Separable synthetic features: one random direction per class plus noise; labels 0..2."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(CLASSES), dim)) * 3
    y = np.repeat(np.arange(len(CLASSES)), n_per_class)
    x = centres[y] + rng.normal(0, spread, (len(y), dim))
    return x.astype(np.float32), y


def test_knn_picks_the_right_class_on_separable_features():
    x, y = blobs(20)
    xv, yv = blobs(10)  # the same class centres (seed 0), new noise below
    xv = xv + np.random.default_rng(5).normal(0, 0.3, xv.shape).astype(np.float32)
    head, report = fit_knn(x, y, xv, yv, CLASSES)
    assert (head.probs(xv).argmax(1) == yv).mean() == 1.0
    assert report["k"] in report["val_balanced_accuracy_by_k"]
    np.testing.assert_allclose(head.probs(xv).sum(1), 1.0, rtol=1e-5)


def test_knn_votes_are_class_balanced():
    """Nine 'a' and one 'b' neighbour among k = 10: unweighted 'a' wins 9:1, balanced they tie 1:1
    (each class's votes sum to N / C), and the nearer neighbour breaks the tie."""
    x = np.array([[1.0, 0.0]] * 9 + [[0.0, 1.0]], np.float32)
    y = np.array([0] * 9 + [1])
    head = KnnHead(x, y, ("a", "b"), k=10)
    probs = head.probs(np.array([[0.1, 1.0]], np.float32))[0]
    assert abs(probs[0] - probs[1]) < 0.01 and probs.argmax() == 1


def test_linear_reaches_high_accuracy_and_chooses_its_l2_on_val():
    x, y = blobs(40, spread=1.5)
    xv, yv = blobs(20, spread=1.5)  # the same class centres, new noise below
    xv = xv + np.random.default_rng(3).normal(0, 1.0, xv.shape).astype(np.float32)
    head, report = fit_linear(x, y, xv, yv, CLASSES)
    assert (head.probs(xv).argmax(1) == yv).mean() >= 0.95
    assert head.l2 == report["l2"] and set(report["val_balanced_accuracy_by_l2"]) >= {head.l2}


@pytest.mark.parametrize("kind", ["knn", "linear"])
def test_the_onnx_head_graph_equals_the_numpy_head(kind):
    x, y = blobs(15)
    q = np.random.default_rng(9).standard_normal((25, 16)).astype(np.float32) * 3
    head = fit_knn(x, y, x, y, CLASSES)[0] if kind == "knn" else fit_linear(x, y, x, y, CLASSES)[0]
    session = ort.InferenceSession(head_graph(head, 16).SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["probs"], {"features": q})[0]
    np.testing.assert_allclose(got, head.probs(q), atol=1e-5)
    assert (got.argmax(1) == head.probs(q).argmax(1)).all()


@pytest.mark.parametrize("kind", ["knn", "linear"])
def test_the_joined_model_is_a_classify_model_the_runner_takes(tmp_path, kind):
    import onnx

    backbone_path = tinymodels.save_backbone(tmp_path / "bb.onnx")
    data = tinymodels.colour_photos(tmp_path / "data", per_class=4)
    backbone = Backbone(backbone_path, 32, RunnerOptions(providers="cpu"))
    paths = sorted(data.rglob("*.png"))
    labels = np.array([CLASSES_RGB.index(p.parent.name) for p in paths])
    feats, skipped = FeatureCache(backbone, tmp_path / "cache").features(paths)
    assert not skipped
    head = (fit_knn if kind == "knn" else fit_linear)(feats, labels, feats, labels, CLASSES_RGB)[0]
    onnx.save(join(backbone_path, head, (32, 32)), tmp_path / "m.onnx")
    runner = Runner(tmp_path / "m.onnx", RunnerOptions(providers="cpu"))
    assert runner.spec.kind == "classify" and runner.spec.labels == CLASSES_RGB and runner.spec.input_hw == (32, 32)
    frames = [cv2.imread(str(p)) for p in paths]
    got = np.stack([r.probs for r in runner.infer(frames)[0]])
    np.testing.assert_allclose(got, head.probs(feats), atol=1e-5)
    assert [CLASSES_RGB[i] for i in got.argmax(1)] == [p.parent.name for p in paths]


def test_features_are_cached_per_file_and_an_edited_photo_is_embedded_again(tmp_path):
    backbone = Backbone(tinymodels.save_backbone(tmp_path / "bb.onnx"), 32, RunnerOptions(providers="cpu"))
    paths = sorted(tinymodels.colour_photos(tmp_path / "data", per_class=2).rglob("*.png"))
    first = FeatureCache(backbone, tmp_path / "cache")
    f1, _ = first.features(paths)
    again = FeatureCache(backbone, tmp_path / "cache")
    f2, _ = again.features(paths)
    assert (first.misses, again.misses, again.hits) == (6, 0, 6)
    np.testing.assert_array_equal(f1, f2)
    cv2.imwrite(str(paths[0]), np.zeros((40, 40, 3), np.uint8))  # a new size and content: a new key
    third = FeatureCache(backbone, tmp_path / "cache")
    third.features(paths)
    assert third.misses == 1


def test_features_made_with_another_resize_are_not_reused(tmp_path, monkeypatch):
    from edgevision.deploy import embed

    backbone = Backbone(tinymodels.save_backbone(tmp_path / "bb.onnx"), 32, RunnerOptions(providers="cpu"))
    paths = sorted(tinymodels.colour_photos(tmp_path / "data", per_class=1).rglob("*.png"))
    FeatureCache(backbone, tmp_path / "cache").features(paths)
    monkeypatch.setattr(embed, "RESIZE_VERSION", "another-resize")
    later = FeatureCache(backbone, tmp_path / "cache")
    later.features(paths)
    assert (later.misses, later.hits) == (3, 0)


def test_an_unreadable_photo_is_skipped_not_fatal(tmp_path):
    backbone = Backbone(tinymodels.save_backbone(tmp_path / "bb.onnx"), 32, RunnerOptions(providers="cpu"))
    paths = sorted(tinymodels.colour_photos(tmp_path / "data", per_class=1).rglob("*.png"))
    bad = tmp_path / "data" / "red" / "broken.png"
    bad.write_bytes(b"not a png")
    feats, skipped = FeatureCache(backbone, tmp_path / "cache").features([*paths, bad])
    assert skipped == [bad] and feats.shape == (3, 6)


def test_a_model_without_a_backbone_spec_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match="not a feature backbone"):
        read_backbone_spec(tinymodels.save("classify", tmp_path / "m.onnx"))
    with pytest.raises(UserError, match="backbone not found"):
        read_backbone_spec(tmp_path / "none.onnx")


def test_live_knn_learns_forgets_predicts_and_exports_what_it_predicts(tmp_path):
    data = tinymodels.colour_photos(tmp_path / "data", per_class=3, classes=("red", "green"))
    live = LiveKnn(tinymodels.save_backbone(tmp_path / "bb.onnx"), ("red", "green"), k=3,
                   options=RunnerOptions(providers="cpu"), cache_root=tmp_path / "cache")
    red = sorted((data / "red").glob("*.png"))
    frame = cv2.imread(str(red[0]))
    assert live.add(red[0], "red") and live.predict(frame) is None  # one class only: no answer yet
    for p in sorted((data / "green").glob("*.png")):
        live.add(p, "green")
    for p in red[1:]:
        live.add(p, "red")
    assert live.counts() == {"red": 3, "green": 3}
    assert live.predict(frame).label == "red"
    assert live.remove(red[0]) and not live.remove(red[0]) and live.counts()["red"] == 2
    (tmp_path / "bad.png").write_bytes(b"")
    assert not live.add(tmp_path / "bad.png", "red")
    with pytest.raises(UserError, match="unknown class"):
        live.add(red[1], "blue")
    out = live.export(tmp_path / "live.onnx")
    with pytest.raises(UserError, match="exists"):
        live.export(out)
    runner = Runner(out, RunnerOptions(providers="cpu"))
    for p in [*red, *sorted((data / "green").glob("*.png"))]:
        image = cv2.imread(str(p))
        np.testing.assert_allclose(runner(image).probs, live.predict(image).probs, atol=1e-5)

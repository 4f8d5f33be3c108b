import numpy as np
import pytest
from edgevision.camera import overlay
from edgevision.deploy.results import Classification, Detections, Keypoints, Segmentation
from edgevision.deploy.tasks import segment

RESULTS = {
    "classify": Classification(("a", "b", "c"), np.array([0.7, 0.2, 0.1])),
    "keypoints": Keypoints(("nose",), np.array([[50.0, 40.0]])),
    "segment": Segmentation(("bg", "person"), np.pad(np.ones((40, 60), np.uint8), ((20, 20), (20, 20)))),
    "detect": Detections(("cat",), np.array([[10, 10, 60, 50]]), np.array([0.9]), np.array([0])),
}


@pytest.mark.parametrize("kind", list(RESULTS))
def test_overlay_draws_every_task_kind_on_the_frame(kind):
    frame = np.full((80, 100, 3), 128, np.uint8)
    overlay.draw_result(frame, RESULTS[kind])
    assert (frame != 128).any()


def test_keypoint_is_drawn_where_the_result_says():
    frame = np.zeros((80, 100, 3), np.uint8)
    RESULTS["keypoints"].draw(frame)
    assert frame[40, 50].any() and not frame[75, 5].any()


def test_segmentation_tints_only_the_mask():
    frame = np.full((80, 100, 3), 128, np.uint8)
    RESULTS["segment"].draw(frame)
    assert (frame[40, 50] != 128).any() and (frame[5, 5] == 128).all()
    with pytest.raises(ValueError, match="does not match the frame"):
        RESULTS["segment"].draw(np.zeros((10, 10, 3), np.uint8))


def test_hud_shows_fps_latency_and_provider_at_the_bottom():
    frame = np.zeros((240, 320, 3), np.uint8)
    overlay.draw_hud(frame, 30.0, 12.5, "CPU")
    assert frame[200:].any() and not frame[:100].any()


@pytest.mark.parametrize("background", ["blur", "0,255,0", "image"])
def test_background_is_replaced_only_outside_the_mask(background):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)
    original = frame.copy()
    fill = np.full((10, 10, 3), (255, 0, 0), np.uint8) if background == "image" else background
    segment.replace_background(frame, RESULTS["segment"], fill)
    person = RESULTS["segment"].class_map > 0
    assert (frame[person] == original[person]).all()
    assert (frame[~person] != original[~person]).any()
    if background == "0,255,0":
        assert frame[0, 0].tolist() == [0, 255, 0]  # R,G,B given, BGR stored
    if background == "image":
        assert frame[0, 0].tolist() == [255, 0, 0]


def test_background_option_parsing_is_strict(tmp_path):
    from edgevision.deploy.errors import UserError

    assert segment.parse_background("blur") == "blur" and segment.parse_background("1, 2,3") == "1, 2,3"
    with pytest.raises(UserError, match="values must be 0..255"):
        segment.parse_background("1,2,300")
    with pytest.raises(UserError, match="cannot read"):
        segment.parse_background(str(tmp_path / "none.jpg"))

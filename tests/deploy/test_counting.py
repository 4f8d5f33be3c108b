from __future__ import annotations

import numpy as np
import pytest
from edgevision.deploy.counting import Analytics, Line, Zone, bottom_centres
from edgevision.deploy.errors import UserError
from edgevision.deploy.results import Chained, Classification, Detections
from edgevision.deploy.track import Tracker

LABELS = ("hand", "face")


def box(cx: float, bottom: float) -> list[float]:
    """A 40x40 box whose bottom-centre is (cx, bottom)."""
    return [cx - 20, bottom - 40, cx + 20, bottom]


def run(analytics: Analytics, frames: list[list[tuple[float, float, int]]]) -> dict:
    """Each frame: a list of (cx, bottom, label id); returns the last counts."""
    counts = None
    for objects in frames:
        xyxy = np.array([box(cx, by) for cx, by, _ in objects], np.float32).reshape(-1, 4)
        result, counts = analytics.update(Detections(LABELS, xyxy, [0.9] * len(objects), [c for *_, c in objects]))
        assert result.track_id is not None
    return counts


def test_line_counts_a_scripted_path_exactly():
    door = Line.parse("door=0,200,400,200", 1)  # drawn left to right: moving down the image is 'in'
    path = [150, 160, 170, 180, 190, 200, 210, 220, 230]  # down across the line (and exactly onto it on the way)
    path += [220, 210, 190, 170]  # back up: out
    path += [180, 190, 200, 190, 180]  # up to the line, touching it, and back: no count
    path += [190, 205, 195, 205]  # a step over (in), back (out), over again (in)
    frames = [[(100, y, 0), (600, 150 + 10 * i, 1)] for i, y in enumerate(path)]  # the face passes beside the line
    counts = run(Analytics(Tracker(), (door,)), frames)
    assert counts == {"lines": {"door": {"in": {"hand": 3}, "out": {"hand": 2}}}}


def test_line_direction_follows_the_order_of_its_ends():
    up = Line.parse("0,200,400,200", 1)
    down = Line.parse("400,200,0,200", 2)
    frames = [[(100, y, 0)] for y in range(150, 250, 10)]
    counts = run(Analytics(Tracker(), (up, down)), frames)
    assert counts["lines"] == {"line1": {"in": {"hand": 1}, "out": {}}, "line2": {"in": {}, "out": {"hand": 1}}}


def test_a_track_that_misses_frames_still_counts_once():
    line = Line.parse("0,200,400,200", 1)
    frames = [[(100, 170, 0)], [(100, 185, 0)], [], [], [(100, 215, 0)], [(100, 230, 0)]]
    assert run(Analytics(Tracker(), (line,)), frames)["lines"]["line1"] == {"in": {"hand": 1}, "out": {}}


def test_zone_counts_inside_in_and_out():
    square = Zone.parse("shelf=100,100,300,100,300,300,100,300", 1)
    a_path = list(range(50, 370, 10))  # bottom-centre x: from left of the zone, through it, out
    b = (200, 250, 1)  # a face first seen inside, staying: inside, never 'in'
    frames = [[(x, 250, 0), b] for x in a_path[:16]]
    counts = run(Analytics(Tracker(), zones=(square,)), frames)
    assert counts["zones"]["shelf"] == {"inside": {"hand": 1, "face": 1}, "in": {"hand": 1}, "out": {}}
    analytics = Analytics(Tracker(), zones=(square,))
    counts = run(analytics, [[(x, 250, 0), b] for x in a_path])
    assert counts["zones"]["shelf"] == {"inside": {"face": 1}, "in": {"hand": 1}, "out": {"hand": 1}}


def test_a_point_on_the_zone_border_has_not_changed_sides():
    square = Zone.parse("100,100,300,100,300,300,100,300", 1)
    frames = [[(x, 250, 0)] for x in (70, 80, 90, 100, 90, 80)]  # to the border and back
    assert run(Analytics(Tracker(), zones=(square,)), frames)["zones"]["zone1"] == {"inside": {}, "in": {}, "out": {}}


def test_a_chain_counts_the_second_models_answer():
    line = Line.parse("0,200,400,200", 1)
    analytics = Analytics(Tracker(), (line,))
    thumbs = ("thumbs_down", "thumbs_up")
    counts = None
    for y in range(150, 250, 10):
        det = Detections(("hand",), [box(100, y), box(300, y - 100)], [0.9, 0.8], [0, 0])
        then = (Classification(thumbs, [0.1, 0.9]), Classification(thumbs, [0.8, 0.2]))
        result, counts = analytics.update(Chained(det, then, det.xyxy))
        assert isinstance(result, Chained) and result.detections.track_id is not None
        assert "track_id" in result.to_dict()["detections"][0]
    assert counts["lines"]["line1"] == {"in": {"thumbs_up": 1}, "out": {}}  # the second hand never reaches y=200


def test_tracking_alone_adds_ids_but_no_counts_and_draws():
    analytics = Analytics(Tracker())
    result, counts = analytics.update(Detections(LABELS, [box(50, 50)], [0.9], [0]))
    assert counts is None and result.track_id.tolist() == [1]
    frame = np.zeros((240, 320, 3), np.uint8)
    Analytics(Tracker(), (Line.parse("0,100,300,100", 1),), (Zone.parse("10,10,100,10,100,100", 1),)).draw(frame)
    assert frame.any()


def test_bottom_centres():
    assert bottom_centres(np.array([[0, 0, 10, 20]], np.float32)).tolist() == [[5, 20]]


@pytest.mark.parametrize(("make", "text", "fragment"), [
    (Line.parse, "1,2,3", "takes 4 numbers"),
    (Line.parse, "1,2,1,2", "same point"),
    (Line.parse, "a,b,c,d", "numbers separated by commas"),
    (Line.parse, "1,2,nan,4", "finite"),
    (Zone.parse, "0,0,10,10", "3 or more points"),
    (Zone.parse, "0,0,10,10,20,20", "encloses no area"),
    (Zone.parse, "0,0,10,10,20", "3 or more points"),
])
def test_bad_lines_and_zones_are_one_clear_error(make, text, fragment):
    with pytest.raises(UserError, match=fragment):
        make(text, 1)


def test_names_are_taken_from_the_text_or_numbered():
    assert Line.parse("door=0,0,10,0", 3).name == "door"
    assert Line.parse("0,0,10,0", 3).name == "line3"
    assert Zone.parse("0,0,10,0,10,10", 2).name == "zone2"

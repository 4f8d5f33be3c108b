from __future__ import annotations

import numpy as np
import pytest
from edgevision.deploy.results import Detections
from edgevision.deploy.track import Tracker, TrackOptions, assign, iou_matrix

LABELS = ("hand", "face")


def boxes_at(t: int) -> dict[str, tuple[list[float], float, int]]:
    """Three objects moving on a 640x480 frame at frame ``t``: name -> (xyxy, score, label id).
    a moves right fast, b moves left (their paths cross at about t=10), c (a face) sits still."""
    return {
        "a": ([20 + 12 * t, 100, 80 + 12 * t, 160], 0.9, 0),
        "b": ([400 - 12 * t, 110, 460 - 12 * t, 170], 0.8, 0),
        "c": ([300, 300, 360, 380], 0.7, 1),
    }


def frame(objects: dict, order: list[str]) -> Detections:
    return Detections(LABELS, np.array([objects[k][0] for k in order], np.float32).reshape(-1, 4),
                      [objects[k][1] for k in order], [objects[k][2] for k in order])


def test_ids_stay_with_moving_boxes_through_missed_frames_and_shuffled_order():
    tracker, seen = Tracker(), {}
    rng = np.random.default_rng(0)
    for t in range(30):
        objects = boxes_at(t)
        if t in (5, 6):  # b is missed for two frames
            del objects["b"]
        if t == 12:
            objects["a"] = (objects["a"][0], 0.3, 0)  # a weak detection: the second round keeps the track
        order = list(rng.permutation(sorted(objects)))
        result = tracker.update(frame(objects, order))
        assert result.track_id.shape == (len(order),)
        for name, track in zip(order, result.track_id):
            seen.setdefault(name, set()).add(int(track))
    assert all(len(ids) == 1 for ids in seen.values()), seen  # one id per object, across the whole sequence
    assert len({next(iter(ids)) for ids in seen.values()}) == 3  # and three different ids


def test_a_box_of_another_label_never_takes_a_track():
    tracker = Tracker()
    first = tracker.update(Detections(LABELS, [[10, 10, 50, 50]], [0.9], [0]))
    second = tracker.update(Detections(LABELS, [[10, 10, 50, 50]], [0.9], [1]))
    assert int(first.track_id[0]) != int(second.track_id[0])


def test_a_track_missed_longer_than_max_missed_is_forgotten():
    tracker = Tracker(TrackOptions(max_missed=2))
    box = Detections(LABELS, [[10, 10, 50, 50]], [0.9], [0])
    empty = Detections(LABELS, np.zeros((0, 4)), [], [])
    first = int(tracker.update(box).track_id[0])
    for _ in range(2):
        tracker.update(empty)
    assert int(tracker.update(box).track_id[0]) == first  # missed 2 frames: kept
    for _ in range(3):
        tracker.update(empty)
    assert int(tracker.update(box).track_id[0]) != first  # missed 3: a new object


def test_new_objects_get_new_ids_and_the_json_and_text_carry_them():
    tracker = Tracker()
    one = tracker.update(Detections(LABELS, [[10, 10, 50, 50]], [0.9], [0]))
    two = tracker.update(Detections(LABELS, [[12, 10, 52, 50], [300, 300, 340, 340]], [0.9, 0.9], [0, 0]))
    assert two.track_id.tolist() == [int(one.track_id[0]), int(one.track_id[0]) + 1]
    assert [d["track_id"] for d in two.to_dict()["detections"]] == two.track_id.tolist()
    frame_bgr = np.zeros((120, 160, 3), np.uint8)
    two.draw(frame_bgr)  # '#1 hand 0.90' is drawn without error
    assert frame_bgr.any()


def test_assign_takes_the_best_total_overlap_and_respects_the_least_iou():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
    iou = iou_matrix(boxes, boxes[::-1])
    assert sorted(assign(iou, 0.2)) == [(0, 1), (1, 0)]
    assert assign(iou_matrix(boxes[:1], np.array([[100, 100, 110, 110]], np.float32)), 0.0) == []
    assert assign(np.zeros((0, 3)), 0.2) == []


def test_track_ids_must_match_the_boxes():
    with pytest.raises(ValueError, match="track_id must have shape"):
        Detections(LABELS, [[0, 0, 1, 1]], [0.5], [0], track_id=[1, 2])


def test_bad_options_fail_when_built():
    with pytest.raises(ValueError, match="match_iou must lie within 0..1"):
        TrackOptions(match_iou=1.5)

"""'edgevision run --track --count-line --zone' as a user runs it, on the shipped clip and chain."""

from __future__ import annotations

import json

from conftest import REPO
from test_cli import assert_one_line_error, edgevision

CLIP = REPO / "camera" / "samples" / "thumbs_demo.mp4"
CHAIN = REPO / "models" / "thumbs_chain.json"


def test_run_tracks_and_counts_thumbs_on_the_sample_clip(tmp_path):
    # The clip shows one hand in 8 stills of 12 frames each; the hand of stills 2-4 moves down across
    # y=220 (and into the zone), the hand of stills 7-8 across y=350.
    out = tmp_path / "out.jsonl"
    proc = edgevision("run", "--model", str(CHAIN), "--source", str(CLIP), "--no-display", "--jsonl", str(out),
                      "--track", "--count-line", "0,220,480,220", "--count-line", "low=0,350,480,350",
                      "--zone", "table=0,250,480,250,480,400,0,400", "--record", str(tmp_path / "out.mp4"),
                      timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "1 found: #1 hand" in proc.stdout + proc.stderr  # the terminal's line names the track too
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 96
    ids = [[d["track_id"] for d in r["result"]["detections"]] for r in records]
    assert all(len(i) == len(r["result"]["detections"]) for i, r in zip(ids, records))
    assert len({tuple(i) for i in ids[12:48]}) == 1  # one hand moving over three stills keeps its id
    last = records[-1]["counts"]
    assert last["lines"] == {"line1": {"in": {"thumbs_down": 1}, "out": {}}, "low": {"in": {"thumbs_up": 1}, "out": {}}}
    assert last["zones"] == {"table": {"inside": {"thumbs_up": 1}, "in": {"thumbs_down": 1}, "out": {}}}
    assert records[23]["counts"]["lines"]["line1"] == {"in": {}, "out": {}}  # counted when it crosses, not before
    assert records[24]["counts"]["lines"]["line1"] == {"in": {"thumbs_down": 1}, "out": {}}


def test_count_line_alone_turns_tracking_on_and_says_so(tiny_model, synthetic_video, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = edgevision("run", "--model", str(tiny_model("detect")), "--source", str(synthetic_video(12)),
                      "--no-display", "--jsonl", str(out), "--count-line", "0,50,128,50")
    assert proc.returncode == 0, proc.stderr
    assert "tracking is on" in proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all("counts" in r and all("track_id" in d for d in r["result"]["detections"]) for r in records)


def test_tracking_a_model_without_boxes_or_a_bad_line_is_one_line(tiny_model, synthetic_video):
    video = str(synthetic_video(4))
    proc = edgevision("run", "--model", str(tiny_model("classify")), "--source", video, "--no-display", "--track")
    assert_one_line_error(proc, "--track needs a detection model", "classify")
    detector = str(tiny_model("detect"))
    proc = edgevision("run", "--model", detector, "--source", video, "--no-display", "--count-line", "1,2,3")
    assert_one_line_error(proc, "--count-line takes 4 numbers")
    proc = edgevision("run", "--model", detector, "--source", video, "--no-display",
                      "--count-line", "a=0,1,2,3", "--zone", "a=0,0,9,0,9,9")
    assert_one_line_error(proc, "its own name")

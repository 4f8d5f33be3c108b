"""A spec is checked where it is made: numbers the runner feeds must be finite and sane, labels text,
and JSON that nests past Python's parser is a SpecError that names the file, never a RecursionError."""

from __future__ import annotations

import math

import pytest
from edgevision.deploy.errors import UserError
from edgevision.deploy.spec import SpecError, TaskSpec, parse_json

BASE = {"kind": "classify", "input_hw": (32, 32), "labels": ("a", "b")}
NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(("fields", "message"), [
    ({"input_hw": (100_000, 100_000)}, "at most 4096 pixels a side"),
    ({"input_hw": (32, 4097)}, "at most 4096 pixels a side"),
    ({"input_hw": (True, True)}, "two positive integers"),
    ({"mean": (math.nan, 0, 0)}, "mean must be finite"),
    ({"mean": (0, math.inf, 0)}, "mean must be finite"),
    ({"std": (math.inf, 1, 1)}, "std must be finite"),
    ({"std": (math.nan, 1, 1)}, "std must be finite"),
    ({"std": (-1, 1, 1)}, "std must be within 1e-6..1e6"),
    ({"std": (1e-30, 1, 1)}, "std must be within 1e-6..1e6"),
    ({"mean": (1e300, 0, 0)}, "mean within -1e6..1e6"),
    ({"labels": ("a", 2)}, "labels must be non-empty strings"),
    ({"labels": ("a", "")}, "labels must be non-empty strings"),
    ({"labels": ("a", ["b"])}, "labels must be non-empty strings"),
    ({"score_threshold": math.nan}, "within 0..1"),
])
def test_specs_the_runner_cannot_feed_are_refused_when_made(fields, message):
    with pytest.raises(SpecError, match=message):
        TaskSpec(**(BASE | fields))


def test_the_largest_sane_spec_is_still_accepted():
    spec = TaskSpec(**(BASE | {"input_hw": (4096, 4096), "mean": (127.5,) * 3, "std": (127.5,) * 3}))
    assert spec.input_hw == (4096, 4096) and spec.std == (127.5,) * 3


@pytest.mark.parametrize("text, message", [
    ('{"kind": "classify", "input_hw": [32, 32], "labels": ["a", "b"], "mean": [NaN, 0, 0]}', "mean must be finite"),
    ('{"kind": "classify", "input_hw": [32, 32], "labels": ["a", "b"], "std": [Infinity, 1, 1]}', "std must be finite"),
    ('{"kind": "classify", "input_hw": [32, 32], "labels": ' + NESTED + "}", "the spec nests its JSON too deep"),
    (NESTED, "the spec nests its JSON too deep"),
    ('{"kind": "classify", "input_hw": [32, 32], "labels": ["' + "x" * 1_000_001 + '"]}', "over the 1,000,000"),
])
def test_spec_json_that_python_reads_but_edgevision_cannot_use_is_a_spec_error(text, message):
    with pytest.raises(SpecError, match=message):
        TaskSpec.from_json(text)


def test_one_json_reader_names_what_it_read():
    with pytest.raises(SpecError, match="the pipeline file x.json nests its JSON too deep"):
        parse_json(NESTED, "the pipeline file x.json")
    with pytest.raises(SpecError, match="the pipeline file x.json is not valid JSON"):
        parse_json("{", "the pipeline file x.json")
    assert parse_json('{"model": "a.onnx"}', "x") == {"model": "a.onnx"}


def test_a_backbone_spec_is_checked_the_same_way(tmp_path):
    import onnx
    import tinymodels
    from edgevision.deploy.embed import BACKBONE_KEY, read_backbone_spec

    path = tinymodels.save_backbone(tmp_path / "bb.onnx")
    for value, message in ((NESTED, "nests its JSON too deep"),
                           ('{"input_hw": [64, 64], "dim": 6, "std": [NaN, 1, 1]}', "std must be finite"),
                           ('{"input_hw": [99999, 64], "dim": 6}', "at most 4096")):
        model = onnx.load(path)
        for prop in model.metadata_props:
            if prop.key == BACKBONE_KEY:
                prop.value = value
        onnx.save(model, tmp_path / "bad.onnx")
        with pytest.raises(UserError, match=message):
            read_backbone_spec(tmp_path / "bad.onnx")


def test_a_result_with_nan_is_an_error_not_a_line_that_is_not_json():
    from edgevision.deploy.results import json_line

    assert json_line({"file": "a.png", "score": 0.5}) == '{"file": "a.png", "score": 0.5}\n'
    assert json_line({"frame": 3, "score": 0.5}, compact=True) == '{"frame":3,"score":0.5}\n'
    with pytest.raises(UserError, match="result for a.png is not a finite number"):
        json_line({"file": "a.png", "score": math.nan})
    with pytest.raises(UserError, match="result at frame 7 is not a finite number"):
        json_line({"frame": 7, "result": {"scores": {"a": math.inf}}}, compact=True)

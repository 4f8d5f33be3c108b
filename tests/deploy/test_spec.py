import json

import pytest
from edgevision.deploy.spec import SpecError, TaskSpec


@pytest.mark.parametrize("kind", ["classify", "keypoints", "segment", "detect"])
def test_spec_round_trips_through_json_for_every_kind(kind):
    labels = ("a", "b")
    spec = TaskSpec(kind=kind, input_hw=(96, 128), labels=labels)
    again = TaskSpec.from_json(spec.to_json())
    assert again == spec
    assert again.input_hw == (96, 128) and again.labels == labels


def test_spec_rejects_unknown_keys_naming_them():
    data = json.loads(TaskSpec("classify", (8, 8), ("a", "b")).to_json()) | {"colour": "RGB"}
    with pytest.raises(SpecError, match="unknown spec keys: colour"):
        TaskSpec.from_dict(data)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "pose"}, "kind must be one of"),
        ({"input_hw": (0, 8)}, "input_hw must be two positive integers"),
        ({"input_hw": (8,)}, "input_hw must be two positive integers"),
        ({"labels": ()}, "at least one"),
        ({"labels": ("a", "a")}, "unique"),
        ({"labels": ("only",)}, "at least two labels"),
        ({"std": (1, 0, 1)}, "must not contain zeros"),
        ({"resize": "squash"}, "resize must be"),
        ({"kind": "detect", "resize": "crop"}, "resize 'crop' is for classify"),
        ({"layout": "NCWH"}, "layout must be"),
        ({"head": "ssd"}, "head must be one of"),
        ({"keypoint_names": ("a",)}, "keypoint_names belong to a YOLO pose head"),
        ({"score_threshold": 1.5}, "within 0..1"),
        ({"version": 99}, "not supported"),
    ],
)
def test_spec_validation_says_what_was_expected_and_what_came(fields, message):
    base = {"kind": "classify", "input_hw": (8, 8), "labels": ("a", "b")}
    with pytest.raises(SpecError, match=message):
        TaskSpec(**(base | fields))


def test_spec_from_json_fails_clearly_on_missing_keys_and_bad_json():
    with pytest.raises(SpecError, match="lacks required keys: input_hw"):
        TaskSpec.from_json('{"kind": "classify", "labels": ["a", "b"]}')
    with pytest.raises(SpecError, match="not valid JSON"):
        TaskSpec.from_json("{kind")


def test_a_signal_inside_a_deferred_step_is_raised_when_the_step_returns():
    import os
    import signal

    import pytest
    from edgevision.deploy.errors import Terminated, interrupts_deferred

    said, finished = [], []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred(said.append, "the step"):
            os.kill(os.getpid(), signal.SIGINT)
            finished.append(True)  # the step runs to its end
    assert finished and said == ["stopping when the step is done (a few seconds)"]
    with pytest.raises(Terminated):
        with interrupts_deferred(said.append, "the step"):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored

import argparse

import pytest
from edgevision.deploy.errors import UserError
from edgevision.training.options import (
    CONFIG_DIR,
    Augment,
    TrainConfig,
    add_train_args,
    config_from_args,
    load_toml,
    make_config,
)


def parser():
    p = argparse.ArgumentParser()
    add_train_args(p)
    return p


def parse(*argv, notice=None):
    return config_from_args(parser().parse_args(argv), notice)


def test_flags_override_the_config_file_which_overrides_defaults(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text('data = "data"\nepochs = 7\nweights = "none"\nmode = "finetune"\n[augment]\nvflip_swap = ["a:b"]\n')
    config = parse("--config", str(cfg), "--epochs", "3", "--no-hflip")
    assert config.epochs == 3 and config.augment.hflip is False and config.augment.vflip_swap == ("a:b",)
    assert config.input_size == 160 and config.config_file == str(cfg.resolve())


def test_paths_in_a_config_file_are_relative_to_that_file(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "w.h5").write_bytes(b"")
    (tmp_path / "cfg" / "c.toml").write_text('data = "../photos"\nextra_data = ["more"]\nweights = "w.h5"\n')
    monkeypatch.chdir(tmp_path)
    config = parse("--config", "cfg/c.toml")
    assert config.data == str(tmp_path / "photos") and config.extra_data == (str(tmp_path / "cfg" / "more"),)
    assert config.weights == str(tmp_path / "cfg" / "w.h5")
    assert parse("--config", "cfg/c.toml", "other").data == "other"  # a flag is relative to where you are


def test_tables_map_to_their_dataclasses_and_flags_name_them(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('data = "x"\nweights = "none"\nmode = "finetune"\ntask = "detect"\n'
                   '[detect]\nclasses = ["hand"]\nrename = ["*-hand:hand"]\nstride = 8\n[augment]\nmosaic = 0.3\n')
    config = parse("--config", str(cfg), "--det-stride", "16", "--lowres", "0.2")
    assert config.detect.classes == ("hand",) and config.detect.rename == ("*-hand:hand",)
    assert config.detect.stride == 16 and config.augment.mosaic == 0.3 and config.augment.lowres == 0.2


def test_old_flat_config_files_still_work_and_say_where_keys_belong(tmp_path):
    cfg = tmp_path / "old.toml"
    cfg.write_text('data = "x"\nweights = "none"\nmode = "finetune"\ntask = "detect"\ndet_classes = ["hand"]\n'
                   'hflip = false\naugment_copies = 2\n')
    told = []
    config = parse("--config", str(cfg), notice=told.append)
    assert config.detect.classes == ("hand",) and config.augment.hflip is False and config.augment.copies == 2
    assert len(told) == 1 and "det_classes -> [detect] classes" in told[0] and "hflip -> [augment] hflip" in told[0]


def test_unknown_config_keys_are_errors_that_list_the_known_ones(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('data = "x"\nepoch = 3\n')
    with pytest.raises(UserError, match="unknown option epoch .*known in the top level: .*epochs"):
        parse("--config", str(cfg))
    cfg.write_text('data = "x"\n[augment]\nzoomm = 0.1\n')
    with pytest.raises(UserError, match=r"unknown option augment\.zoomm .*known in augment: .*zoom"):
        parse("--config", str(cfg))


@pytest.mark.parametrize(("text", "message"), [
    ('[augment]\nhflip = "no"', "augment.hflip must be a bool"),
    ("head_epochs = 2.5", "head_epochs must be a int"),
    ("data = 5", "data must be a str"),
    ("lr = -1", "lr must be above 0"),
    ("[augment]\nzoom = 3", "augment.zoom must be within 0.0..1.0"),
    ('augment = "x"', r"\[augment\] must be a table"),
])
def test_toml_values_are_type_and_range_checked(tmp_path, text, message):
    cfg = tmp_path / "c.toml"
    body = text if text.startswith("data") else f'data = "x"\nweights = "none"\nmode = "finetune"\n{text}'
    cfg.write_text(body + "\n")
    with pytest.raises(UserError, match=message):
        parse("--config", str(cfg))


def test_bad_toml_and_missing_files_are_clear(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("data = \n")
    with pytest.raises(UserError, match="is not valid TOML"):
        load_toml(bad)
    bad.write_bytes(b'data = "\xff\xfe"\n')
    with pytest.raises(UserError, match="is not valid TOML"):
        load_toml(bad)
    with pytest.raises(UserError, match="config file not found"):
        load_toml(tmp_path / "none.toml")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "slow"}, "mode must be one of"),
        ({"input_size": 100}, "multiple of 8"),
        ({"val_split": 1.5}, "val_split"),
        ({"vflip_swap": ("a-b",)}, "vflip_swap entries"),
        ({"weights": "/nope.h5"}, "weights file not found"),
        ({"task": "pose"}, "task must be one of classify, keypoints, segment, detect"),
        ({"task": "detect", "det_classes": ()}, "at least one class name"),
        ({"task": "detect", "score_threshold": 1.5}, "score_threshold"),
        ({"task": "keypoints", "extra_data": ("y",)}, "extra_data is for classification"),
        ({"task": "segment", "seg_classes": ("bg",)}, "classes names background plus one class"),
        ({"head": "fcn"}, "head must be"),
        ({"mode": "fast"}, "fast mode needs pretrained weights"),
        ({"backbone": "resnet"}, "backbone must be"),
        ({"backbone": "tiny", "weights": "imagenet"}, "tiny backbone has no pretrained weights"),
    ],
)
def test_bad_option_values_fail_when_the_config_is_built(fields, message):
    with pytest.raises(UserError, match=message):
        make_config({"data": "x", "weights": "none", "mode": "finetune"} | fields)


def test_config_written_to_a_run_reads_back_the_same(tmp_path):
    config = TrainConfig(data=str(tmp_path), runs_dir=str(tmp_path / "runs"), weights="none", mode="finetune",
                         notes='say "hi"\nthere',
                         augment=Augment(vflip_swap=("a:b",), lowres=0.25), detect={"classes": ("a", "b")})
    (tmp_path / "c.toml").write_text(config.to_toml())
    assert make_config(load_toml(tmp_path / "c.toml")) == config


def test_help_says_what_each_option_means_and_lists_choices():
    text = parser().format_help()
    assert "[augment] table" in text and "[detect] table" in text
    assert "--mode {fast,finetune}" in text and "--task {classify,keypoints,segment,detect}" in text
    assert "left-right flips" in text and "probability of a low-resolution copy" in text


def test_every_shipped_config_is_valid_with_weights_overridden():
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
    assert names == ["emotions", "emotions_face", "faces", "fingers", "hands", "nose", "nose_face", "person_seg",
                     "raccoon", "thumbs", "thumbs_hand"]
    for name in names:
        config = parse("--config", name, "--weights", "none")
        assert config.name == name and config.mode == "finetune"
        assert not config.data.startswith("..")  # resolved against the file
    assert parse("--config", "nose", "--weights", "none").task == "keypoints"
    assert parse("--config", "hands", "--weights", "none").detect.rename[0] == "*-hand:hand"

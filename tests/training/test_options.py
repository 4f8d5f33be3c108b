import argparse

import pytest
from edgevision.deploy.errors import UserError
from edgevision.training.options import CONFIG_DIR, TrainConfig, add_train_args, config_from_args, load_toml


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_train_args(parser)
    return config_from_args(parser.parse_args(argv))


def test_flags_override_the_config_file_which_overrides_defaults(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'data = "{tmp_path / "data"}"\nepochs = 7\nweights = "none"\nmode = "finetune"\nvflip_swap = ["a:b"]\n'
    )
    config = parse("--config", str(cfg), "--epochs", "3", "--no-hflip")
    assert config.epochs == 3 and config.hflip is False and config.vflip_swap == ("a:b",)
    assert config.input_size == 160 and config.config_file == str(cfg)


def test_unknown_config_keys_are_errors_that_list_the_known_ones(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('data = "x"\nepoch = 3\n')
    with pytest.raises(UserError, match="unknown keys epoch .*known: .*epochs"):
        load_toml(cfg)


def test_bad_toml_and_missing_files_are_clear(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("data = \n")
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
        ({"task": "segment", "seg_classes": ("bg",)}, "seg_classes names background plus one class"),
        ({"head": "fcn"}, "head must be"),
        ({"mode": "fast"}, "fast mode needs pretrained weights"),
        ({"backbone": "resnet"}, "backbone must be"),
        ({"backbone": "tiny", "weights": "imagenet"}, "tiny backbone has no pretrained weights"),
    ],
)
def test_bad_option_values_fail_when_the_config_is_built(fields, message):
    with pytest.raises(UserError, match=message):
        TrainConfig(**({"data": "x", "weights": "none", "mode": "finetune"} | fields))


def test_config_written_to_a_run_reads_back_the_same(tmp_path):
    config = TrainConfig(data="x", weights="none", mode="finetune", vflip_swap=("a:b",), notes='say "hi"\nthere')
    (tmp_path / "c.toml").write_text(config.to_toml())
    assert TrainConfig(**load_toml(tmp_path / "c.toml")) == config


def test_every_shipped_config_is_valid_with_weights_overridden():
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
    assert names == ["emotions", "fingers", "hands", "nose", "person_seg", "raccoon", "thumbs"]
    for name in names:
        config = parse("--config", name, "--weights", "none")
        assert config.name == name and config.mode == "finetune"
    assert parse("--config", "nose", "--weights", "none").task == "keypoints"
    assert parse("--config", "hands", "--weights", "none").det_rename == ("*-hand:hand",)

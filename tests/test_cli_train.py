"""The train parser is generated from Config: every option a flag, every default as shown;
the fields a run records have none."""

import argparse
import dataclasses
import os
import subprocess
import sys

import pytest

from gluon_triplet.cli import build_parser, config_from_args, main
from gluon_triplet.cli.train import option_names
from gluon_triplet.config import Config

# The options; the recorded fields (what a run resolved: input_shape, architecture) are
# set by runs and JSON configs only.
FIELDS = [f for f in dataclasses.fields(Config) if not f.metadata.get("recorded")]
RECORDED = [f for f in dataclasses.fields(Config) if f.metadata.get("recorded")]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A value other than the default for every field, as typed on the command line.
OTHER = {
    "dataset": ["mnist-5k"],
    "data_dir": ["/data/idx"],
    "image_size": ["48x64"],
    "image_channels": ["3"],
    "upscale": [],  # --no-upscale
    "strict": [],  # --strict
    "workers": ["2"],
    "max_memory": ["0.5"],
    "max_pixels": ["1000000"],
    "model": ["mlp"],
    "pretrained": [],  # --pretrained
    "pretrained_params": ["w.params"],
    "hidden": ["64", "32"],
    "embedding_size": ["16"],
    "output": ["relu"],
    "normalize": [],  # --no-normalize
    "init_scale": ["0.05"],
    "margin": ["0.5"],
    "optimizer": ["sgd"],
    "lr": ["0.1"],
    "momentum": ["0.9"],
    "weight_decay": ["0.0001"],
    "batch_size": ["64"],
    "epochs": ["3"],
    "triplets_per_class": ["7"],
    "miner": ["batch-hard"],
    "pk_classes": ["4"],
    "pk_samples": ["8"],
    "distance": ["cosine"],
    "lr_schedule": ["constant"],
    "augment": ["digits"],
    "warmup_epochs": ["1.5"],
    "ema_decay": ["0.998"],
    "soft_margin": [],  # --soft-margin
    "ctx": ["cpu"],
    "kvstore": ["local"],
    "seed": ["5"],
    "logdir": ["elsewhere"],
    "run_name": ["r1"],
    "projector_samples": ["10"],
    "projector_every": ["2"],
    "plots": [],  # --no-plots
    "eval_batch_size": ["128"],
    "log_every": ["5"],
    "eval_every": ["2"],
    "eval_samples": ["500"],
    "max_data_bytes": ["1000000"],
    "val_fraction": ["0.2"],
}


def test_every_config_field_has_a_flag():
    names = set(option_names())
    for f in FIELDS:
        assert "--" + f.name.replace("_", "-") in names, f.name
        if f.type in (bool, "bool"):
            assert "--no-" + f.name.replace("_", "-") in names, f.name
    assert set(OTHER) == {f.name for f in FIELDS}  # a new field needs a case here
    assert {f.name for f in RECORDED} == {"input_shape", "architecture"}
    for f in RECORDED:
        assert "--" + f.name.replace("_", "-") not in names, f.name


@pytest.mark.parametrize(
    "argv",
    [
        ["--conv-block", "pooled"],
        ["--channels", "16", "32"],
        ["--batch-norm"],
        ["--no-batch-norm"],
        ["--batch-norm-from", "2"],
        ["--pool-first"],
        ["--input-shape", "1", "28", "28"],
        ["--architecture", "{}"],
    ],
)
def test_the_removed_and_recorded_settings_have_no_flag(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", *argv])
    assert e.value.code == 2
    assert f"unrecognized arguments: {' '.join(argv)}" in capsys.readouterr().err


def test_the_cnn_is_chosen_by_name(capsys):
    assert config_from_args(build_parser().parse_args(["--model", "convnet"])).model == "convnet"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model", "pooled"])
    assert "invalid choice: 'pooled' (choose from 'auto', 'mlp', 'cnn', 'convnet'" in (
        capsys.readouterr().err
    )


def test_a_config_file_with_a_removed_setting_names_what_replaced_it(tmp_path, capsys):
    (tmp_path / "c.json").write_text('{"conv_block": "pooled", "epochs": 2}')
    assert main(["train", "--config", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "config key 'conv_block' is no longer a setting: the CNN is chosen by --model" in err
    # A config file may give the architecture, as a bench recipe does.
    arch = '{"block": "pooled", "channels": [8, 16], "batch_norm": true}'
    (tmp_path / "c.json").write_text(f'{{"model": "cnn", "architecture": {arch}}}')
    args = build_parser().parse_args(["--config", str(tmp_path / "c.json"), "--epochs", "2"])
    config = config_from_args(args)
    assert config.architecture == {"block": "pooled", "channels": (8, 16), "batch_norm": True}
    assert config.epochs == 2


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_the_help_shows_the_config_default(field):
    (action,) = [
        a
        for a in build_parser()._actions
        if a.dest == field.name and not a.help.startswith("the opposite")
    ]
    shown = field.metadata.get("shown_default")
    if shown is None:
        value = field.default
        text = (
            {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else value
        )
        assert action.help.endswith(f"(default: {text})"), action.help
    else:
        # What the default means, spelled out: it starts with the value unless it is None.
        assert action.help.endswith(f"(default: {shown})")
        assert field.default is None or shown.startswith(str(field.default)), field.name


def test_pk_classes_help_says_what_none_means(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "-P PK_CLASSES, --pk-classes PK_CLASSES classes per P x K batch (default: min(10," in out
    assert "default: None" not in out


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_each_flag_sets_its_field(field):
    flag = "--" + field.name.replace("_", "-")
    if field.default is True:
        flag = "--no-" + field.name.replace("_", "-")
    config = config_from_args(build_parser().parse_args([flag, *OTHER[field.name]]))
    value = getattr(config, field.name)
    assert value != field.default
    others = {f.name for f in FIELDS} - {field.name}
    assert all(getattr(config, n) == getattr(Config(), n) for n in others)


def test_short_options_and_both_switch_spellings():
    args = build_parser().parse_args(["-P", "3", "-K", "4", "--no-normalize", "--normalize"])
    config = config_from_args(args)
    assert (config.pk_classes, config.pk_samples, config.normalize) == (3, 4, True)
    assert config_from_args(build_parser().parse_args(["--no-plots"])).plots is False


def test_unset_flags_leave_the_preset_alone():
    assert isinstance(build_parser().parse_args([]), argparse.Namespace)
    assert vars(build_parser().parse_args([])) == {}
    assert config_from_args(build_parser().parse_args([])) == Config()


def test_train_help_names_train(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("usage: gluon-triplet train ")


def test_python_dash_m_runs_the_command_line():
    proc = subprocess.run(
        [sys.executable, "-m", "gluon_triplet", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: gluon-triplet ") and "--pk-classes" in proc.stdout


def test_a_field_declared_without_option_still_gets_a_flag():
    from gluon_triplet.cli.train import add_config_options

    @dataclasses.dataclass
    class C:
        new_knob: int = 3
        on: bool = False

    p = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    groups = add_config_options(p, C)
    assert list(groups) == ["other"]
    assert vars(p.parse_args(["--new-knob", "4", "--on"])) == {"new_knob": 4, "on": True}
    assert "new knob (default: 3)" in p.format_help()


def test_the_help_names_every_registered_subcommand():
    from gluon_triplet.cli import SUBCOMMANDS, subcommand

    epilog = build_parser().epilog
    for name in SUBCOMMANDS:
        assert name == "train" or f"{name}|" in epilog or f"|{name} --help" in epilog
        module = subcommand(name)
        assert callable(module.main) and module.HELP

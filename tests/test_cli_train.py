"""The train parser is generated from Config: every option a flag, every default as shown;
the fields a run records have none."""

import argparse
import dataclasses
import json
import os
import subprocess
import sys

import pytest
from helpers import (
    FAST,
    error_lines,
    fill,
    snapshot,
)

from gluon_triplet.cli import build_parser, config_from_args, main
from gluon_triplet.cli.train import option_names
from gluon_triplet.config import Config
from gluon_triplet.data.datasets import DataError

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


# ---------------------------- bad input: one error line, exit 2, nothing written


# (case id) -> (argv, exact fragment of the one error line). {name} is filled from inputs.
CASES = {
    "unknown dataset": (
        ["--dataset", "cifar"],
        "error: unknown dataset 'cifar'; choose one of: mnist, fashion-mnist, mnist-5k, "
        "idx:DIR, npz:FILE",
    ),
    "missing data dir": (
        ["--dataset", "idx:{dir}/nope"],
        "error: IDX directory not found: {dir}/nope",
    ),
    "missing --data-dir": (
        ["--dataset", "mnist", "--data-dir", "{dir}/nope"],
        "error: IDX directory not found: {dir}/nope",
    ),
    "empty data dir": (
        ["--dataset", "idx:{empty}"],
        "error: missing IDX files in {empty}: train-images-idx3-ubyte[.gz], "
        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]",
    ),
    "truncated IDX": (
        ["--dataset", "idx:{truncated}"],
        "error: {truncated}/train-images-idx3-ubyte: truncated IDX file: expected 1440 bytes "
        "of data, found 1433",
    ),
    "wrong IDX magic": (
        ["--dataset", "idx:{magic}"],
        "error: {magic}/t10k-labels-idx1-ubyte: not an IDX file (bad magic number 0x08030801)",
    ),
    "image/label count mismatch": (
        ["--dataset", "idx:{count}"],
        "error: image/label count mismatch in {count} (train): 40 images, 39 labels",
    ),
    "one class only": (
        ["--dataset", "idx:{one_class}"],
        "error: idx:{one_class} training set: need at least 2 classes with >= 2 samples to "
        "form triplets; got 1 class(es), 1 with >= 2 samples",
    ),
    "every class a singleton (x, y)": (
        ["--dataset", "npz:{singletons}"],
        "error: {singletons}: no test samples (every class has a single sample)",
    ),
    "every class a singleton (train split)": (
        ["--dataset", "npz:{singleton_train}"],
        "error: npz:{singleton_train} training set: need at least 2 classes with >= 2 "
        "samples to form triplets; got 12 class(es), 0 with >= 2 samples",
    ),
    "labels (N, 2)": (
        ["--dataset", "npz:{labels_n2}"],
        "error: {labels_n2}: x/y labels must be (N,) or (N, 1), got shape (40, 2)",
    ),
    "NaN in inputs": (
        ["--dataset", "npz:{nan}"],
        "error: {nan}: x/y samples contain NaN or infinite values",
    ),
    "inf in inputs": (
        ["--dataset", "npz:{inf}"],
        "error: {inf}: x/y samples contain NaN or infinite values",
    ),
    "non-numeric samples": (
        ["--dataset", "npz:{strings}"],
        "error: {strings}: x/y samples are not numeric (dtype <U1)",
    ),
    "non-numeric labels": (
        ["--dataset", "npz:{string_labels}"],
        "error: {string_labels}: x/y labels must be integers, got dtype <U3",
    ),
    "non-integer labels": (
        ["--dataset", "npz:{float_labels}"],
        "error: {float_labels}: x/y labels must be integers, got dtype float64",
    ),
    "object array (pickle) in npz": (
        ["--dataset", "npz:{evil}"],
        "error: {evil}: contains pickled objects; refusing to load",
    ),
    "batch size larger than the data": (
        ["--dataset", "idx:{good_idx}", "--miner", "offline", "--batch-size", "1000"],
        "error: --batch-size 1000 is larger than the 36 training triplets of an epoch; use "
        "--batch-size 36 or less",
    ),
    "P x K: more classes than exist": (
        ["--dataset", "idx:{good_idx}", "--miner", "batch-hard", "--pk-classes", "5"],
        "error: --pk-classes 5 asks for more classes per batch than the training data has "
        "(4); use --pk-classes 4 or less",
    ),
    "logs dir is a file": (
        ["--dataset", "idx:{good_idx}", "--logdir", "{file}"],
        "error: logs dir '{file}' exists and is not a directory",
    ),
    "logs dir under a file": (
        ["--dataset", "idx:{good_idx}", "--logdir", "{file}/logs"],
        "error: cannot create logs dir '{file}/logs': '{file}' is not a directory",
    ),
    "existing --run-name": (
        ["--dataset", "idx:{good_idx}", "--run-name", "earlier-run"],
        "error: run directory 'logs/earlier-run' already exists; choose another --run-name",
    ),
    "config: unknown key": (
        ["--config", "{cfg}/unknown.json"],
        "error: {cfg}/unknown.json: unknown config key(s): lrr; valid keys: dataset, data_dir,",
    ),
    "config: wrong type": (
        ["--config", "{cfg}/type.json"],
        "error: {cfg}/type.json: config key 'epochs' must be an integer or null, got '3'",
    ),
    "config: wrong type (bool)": (
        ["--config", "{cfg}/bool.json"],
        "error: {cfg}/bool.json: config key 'normalize' must be of type bool, got 'yes'",
    ),
    "config: not JSON": (
        ["--config", "{cfg}/not_json.json"],
        "error: {cfg}/not_json.json: not valid JSON (Expecting property name enclosed in "
        "double quotes: line 1 column 14 (char 13))",
    ),
    "config: not an object": (
        ["--config", "{cfg}/list.json"],
        "error: {cfg}/list.json: config must be a JSON object, got list",
    ),
    "decompression bomb: npz": (
        ["--dataset", "npz:{bomb_npz}", "--max-data-bytes", "1000000"],
        "error: {bomb_npz}: array 'x' of shape (2000, 2500) float32 needs 19.1 MiB in memory, "
        "above the limit of 976.6 KiB (--max-data-bytes; default: half the available memory)",
    ),
    "decompression bomb: npz header beyond any memory (default limit)": (
        ["--dataset", "npz:{liar_npz}"],
        "error: {liar_npz}: array 'x' of shape (1000000000000, 10000) uint8 needs 35.5 PiB "
        "in memory, above the limit of ",
    ),
    "decompression bomb: gzipped IDX": (
        ["--dataset", "idx:{bomb_idx}", "--max-data-bytes", "1000000"],
        "error: {bomb_idx}/train-images-idx3-ubyte.gz: IDX data of shape (20, 1000, 1000) uint8 "
        "needs 76.3 MiB in memory, above the limit of 976.6 KiB (--max-data-bytes; default: "
        "half the available memory)",
    ),
    "--momentum nan": (
        ["--dataset", "idx:{good_idx}", "--optimizer", "sgd", "--momentum", "nan"],
        "error: momentum (--momentum) must be a finite number, got nan",
    ),
    "--weight-decay nan": (
        ["--dataset", "idx:{good_idx}", "--weight-decay", "nan"],
        "error: weight_decay (--weight-decay) must be a finite number, got nan",
    ),
    "--weight-decay inf": (
        ["--dataset", "idx:{good_idx}", "--weight-decay", "inf"],
        "error: weight_decay (--weight-decay) must be a finite number, got inf",
    ),
    "--lr inf": (
        ["--dataset", "idx:{good_idx}", "--lr", "inf"],
        "error: lr (--lr) must be a finite number, got inf",
    ),
    "--seed -1": (
        ["--dataset", "idx:{good_idx}", "--seed", "-1"],
        "error: seed must be >= 0, got -1",
    ),
    "--embedding-size 3000000000": (
        ["--dataset", "idx:{good_idx}", "--embedding-size", "3000000000"],
        "error: embedding_size (--embedding-size) 3000000000 is too large: MXNet layers hold at "
        "most 2147483647 units, and one of 3000000000 units needs 11.2 GiB per input feature "
        "(float32 weights)",
    ),
    "--hidden 10000000000": (
        ["--dataset", "idx:{good_idx}", "--hidden", "10000000000"],
        "error: hidden (--hidden) 10000000000 is too large: MXNet layers hold at most "
        "2147483647 units, and one of 10000000000 units needs 37.3 GiB per input feature "
        "(float32 weights)",
    ),
    "--hidden 1000000000 (beyond memory)": (
        ["--dataset", "idx:{good_idx}", "--hidden", "1000000000"],
        "error: this run needs at least 1.1 TiB of memory: its 45000000008 parameters need "
        "670.6 GiB with their gradients and optimizer state; only ",
    ),
    "-K 100000000 (beyond memory)": (
        ["--dataset", "idx:{good_idx}", "-K", "100000000"],
        "error: this run needs at least 568.4 PiB of memory: a batch of 400000000 samples "
        "(-P 4 x -K 100000000) needs 568.4 PiB, 568.4 PiB of it for its 400000000 x 400000000 "
        "distances; only ",
    ),
    "samples of shape (N, 0)": (
        ["--dataset", "npz:{no_features}"],
        "error: {no_features}: x/y samples have no values: shape (40, 0) (every sample is empty)",
    ),
    "uint64 labels beyond int64": (
        ["--dataset", "npz:{uint64_labels}"],
        "error: {uint64_labels}: x/y labels must fit in int64; got uint64 values up to "
        "18446744073709551615 (number the classes 0, 1, ... instead)",
    ),
    "config: missing file": (
        ["--config", "{cfg}/missing.json"],
        "error: config file not found: {cfg}/missing.json",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_error_line_exit_2_nothing_written(case, inputs, workdir, capsys):
    argv, expected = CASES[case]
    argv = [fill(a, inputs) for a in argv]
    expected = fill(expected, inputs)
    before, inputs_before = snapshot(workdir), snapshot(inputs["dir"])
    code = main([*FAST, "--logdir", "logs", *argv])
    err = capsys.readouterr().err
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(expected), err
    assert "Traceback" not in err
    assert snapshot(workdir) == before
    assert snapshot(inputs["dir"]) == inputs_before
    assert not os.path.exists(inputs["marker"])  # the pickle never ran


def test_labels_n_by_1_are_accepted_and_flattened(inputs, workdir, capsys):
    code = main(
        [*FAST, "--logdir", "logs", "--run-name", "r", "--dataset", f"npz:{inputs['labels_n1']}"]
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((workdir / "logs" / "r" / "metrics.json").read_text())
    assert metrics["finished"] and metrics["dataset"]["train"] + metrics["dataset"]["test"] == 40


def test_debug_shows_the_traceback(inputs, workdir):
    with pytest.raises(DataError, match="unknown dataset"):
        main([*FAST, "--logdir", "logs", "--dataset", "cifar", "--debug"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_unwritable_logs_dir(inputs, workdir, capsys):
    locked = workdir / "locked"
    locked.mkdir(mode=0o500)
    code = main([*FAST, "--logdir", str(locked), "--dataset", f"idx:{inputs['good_idx']}"])
    assert code == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: logs dir {str(locked)!r} is not writable"
    ]
    assert os.listdir(locked) == []


def test_resume_refuses_other_flags(interrupted_run, workdir, capsys):
    before = snapshot(workdir)
    assert main(["--resume", "logs/r", "--lr", "0.5", "--epochs", "9"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: --resume continues a run with its own config.json; drop --epochs, --lr"
    ]
    assert snapshot(workdir) == before

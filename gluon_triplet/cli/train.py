"""``gluon-triplet train [options]``: one training run.

The options are generated from :class:`~gluon_triplet.config.Config`'s field metadata
(:func:`~gluon_triplet.config.option`): one place holds each setting's name, default,
help, choices and help section. Values layer as defaults <- ``--preset`` <- ``--config
FILE.json`` <- explicit flags; ``--resume RUN_DIR`` takes the run's own ``config.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Dict, List, Optional, Sequence

from .. import __version__
from ..config import PRESETS, Config
from ..errors import ConfigError
from ..runs.rundir import RunDir
from .common import run_command

__all__ = ["HELP", "add_config_options", "build_parser", "config_from_args", "main"]

HELP = "train an embedding net (the default subcommand)"


def _unwrap(tp: Any) -> Any:
    """``Optional[X]`` -> ``X``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value)
    return str(value)


def flag_of(field: dataclasses.Field) -> str:
    """The long option of a Config field (``--no-X`` for a switch that is on by default)."""
    name = field.name.replace("_", "-")
    return f"--no-{name}" if field.default is True else f"--{name}"


def add_config_options(
    parser: argparse.ArgumentParser, config_cls: type = Config
) -> Dict[str, Any]:
    """Add one option per field of ``config_cls``, in argument groups by the fields'
    ``group``; returns the groups by name.

    Options default to ``argparse.SUPPRESS`` (set the parser's ``argument_default``), so
    an unset flag leaves the preset's or the JSON file's value alone. A bool field gets a
    switch pair, ``--X`` and ``--no-X``.
    """
    groups: Dict[str, Any] = {}
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        meta = field.metadata
        if meta.get("recorded"):
            continue  # resolved and recorded by a run, not chosen on the command line
        # A field declared without option() still gets a flag, under "other".
        name = meta.get("group", "other")
        group = groups.get(name)
        if group is None:
            group = groups[name] = parser.add_argument_group(name)
        long = "--" + field.name.replace("_", "-")
        names = [*meta.get("flag", ()), long]
        shown = meta.get("shown_default", _shown(field.default))
        text = f"{meta.get('help', field.name.replace('_', ' '))} (default: {shown})"
        tp = _unwrap(hints[field.name])
        if tp is bool:
            group.add_argument(*names, dest=field.name, action="store_true", help=text)
            group.add_argument(
                f"--no-{field.name.replace('_', '-')}",
                dest=field.name,
                action="store_false",
                help=f"the opposite of {long}",
            )
            continue
        kwargs: Dict[str, Any] = {"dest": field.name, "help": text}
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if typing.get_origin(tp) is tuple:  # Tuple[int, ...]
            kwargs.update(type=typing.get_args(tp)[0], nargs="+")
        else:
            kwargs["type"] = tp
        group.add_argument(*names, **kwargs)
    return groups


def build_parser(prog: str = "gluon-triplet train") -> argparse.ArgumentParser:
    """The train parser: the Config options plus ``--preset``, ``--config``, ``--resume``
    and the output switches."""
    from .commands import SUBCOMMANDS

    others = "|".join(name for name in SUBCOMMANDS if name != "train")
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train an embedding net with triplet loss (MXNet Gluon) and write the "
        "learned embedding for TensorBoard's projector.",
        argument_default=argparse.SUPPRESS,  # unset flags leave config/JSON values alone
        epilog=f"Other subcommands: gluon-triplet {others} --help. "
        "`gluon-triplet [options]` is the same as `gluon-triplet train [options]`.",
    )
    a = p.add_argument
    a("--version", action="version", version=f"gluon-triplet {__version__}")
    a(
        "--preset",
        choices=sorted(PRESETS),
        help="a named recipe under --config and flags; reference = the reference recipe "
        "(offline random triplets, Dense 256-128 ReLU MLP, SGD 0.05, batch 1024, margin 1) "
        "(default: default, the measured recipe: semi-hard mining, normalised embeddings, "
        "Adam, cosine schedule)",
    )
    a(
        "--config",
        dest="config_file",
        metavar="FILE.json",
        help="read settings from a JSON file (keys as in a run's config.json); flags override it",
    )
    output = add_config_options(p)["output"]
    output.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run in RUN_DIR from its last finished epoch, with its "
        "own config.json (no other training flags); the result equals an uninterrupted run "
        "(default: start a new run)",
    )
    output.add_argument(
        "--accept-changed-data",
        action="store_true",
        help="with --resume: continue even if the data changed since the run started "
        "(default: refuse, saying what changed)",
    )
    output.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings, errors and the summary"
    )
    output.add_argument(
        "-v", "--verbose", action="store_true", help="also debug lines: config, per-class P@1"
    )
    output.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults <- preset <- JSON file <- explicit flags."""
    values: Dict[str, Any] = dict(PRESETS[getattr(args, "preset", "default")])
    if "config_file" in args:
        # Validates every key and type; one read, so the keys are those of the same file.
        loaded, recorded = Config.load_recorded(args.config_file)
        # Only the keys the file sets: the others keep the preset's values.
        values.update({key: getattr(loaded, key) for key in recorded})
    for key, value in vars(args).items():
        if key in _FIELDS:
            values[key] = list(value) if isinstance(value, tuple) else value
    return Config.from_dict(values)


_RESUME_KEEPS = ("resume", "accept_changed_data", "quiet", "verbose", "debug")


def resume_config(args: argparse.Namespace) -> Config:
    """The config of the run ``args.resume`` names, read from its ``config.json``."""
    extra = sorted(k for k in vars(args) if k not in _RESUME_KEEPS)
    if extra:
        flags = ", ".join(
            "--config" if k == "config_file" else flag_of(_FIELDS[k]) if k in _FIELDS else k
            for k in extra
        )
        raise ConfigError(f"--resume continues a run with its own config.json; drop {flags}")
    return RunDir.open(args.resume).load_config()


def _train(args: argparse.Namespace) -> None:
    from ..runs.run import run

    resume: Optional[str] = getattr(args, "resume", None)
    accept = getattr(args, "accept_changed_data", False)
    if accept and not resume:
        raise ConfigError("--accept-changed-data only applies with --resume RUN_DIR")
    config = resume_config(args) if resume else config_from_args(args)
    run(config, quiet=getattr(args, "quiet", False), resume=resume, accept_changed_data=accept)


def main(argv: Sequence[str], prog: str = "gluon-triplet train") -> int:
    """``gluon-triplet train [options]``; returns the exit status."""
    return run_command(build_parser(prog), _train, argv)


def option_names() -> List[str]:
    """Every long option the train parser accepts (for tests and docs)."""
    return [s for a in build_parser()._actions for s in a.option_strings if s.startswith("--")]

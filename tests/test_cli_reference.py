"""docs/cli.md is what the parsers generate, and the generator misses no option."""

import argparse
import importlib
import os

from gluon_triplet.cli import reference as cli_reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cli_reference_is_current():
    """docs/cli.md is generated from the parsers: regenerate it with `make docs`."""
    expected = cli_reference.render(cli_reference.collect_parsers())
    with open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8") as f:
        current = f.read()
    assert current == expected, (
        "docs/cli.md is stale: run `make docs` "
        "(python -m gluon_triplet.cli.reference --out docs/cli.md)"
    )


def test_cli_reference_names_every_option_of_every_subcommand():
    parsers = cli_reference.collect_parsers()
    cli = importlib.import_module(cli_reference.CLI_MODULE)
    assert [name for name, _ in parsers] == list(cli.SUBCOMMANDS)
    text = cli_reference.render(parsers)
    for _, parser in parsers:
        assert f"## `{parser.prog}`" in text
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for flag in action.option_strings:
                assert f"`{flag}" in text, (parser.prog, flag)


def test_cli_reference_check_mode(tmp_path, capsys):
    stale = tmp_path / "cli.md"
    stale.write_text("# old\n", encoding="utf-8")
    assert cli_reference.main(["--check", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
    assert cli_reference.main(["--out", str(stale)]) == 0
    assert cli_reference.main(["--check", str(stale)]) == 0


def test_render_parser_walks_groups_subparsers_and_nargs():
    """Generic argparse: groups, positionals, nargs, choices, defaults, nested subcommands."""
    p = argparse.ArgumentParser(prog="tool", description="A tool. It does things.")
    p.add_argument("src", help="input")
    g = p.add_argument_group("tuning")
    g.add_argument("-k", "--top-k", type=int, default=5, help="neighbours")
    g.add_argument("--mode", choices=("fast", "exact"), default="exact", help="search mode")
    g.add_argument("--sizes", type=int, nargs="+", metavar="N", help="sizes | widths")
    g.add_argument("--hidden", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="cmd")
    child = sub.add_parser("build", help="build an index", description="Build it.")
    child.add_argument("--out", required=True, help="where")
    text = cli_reference.render_parser(p)
    assert "## `tool`" in text and "tool [options] src {build} ..." in text
    assert "### tuning" in text
    assert "| `-k TOP_K`, `--top-k TOP_K` | neighbours (default: `5`) |" in text
    assert "| `--mode MODE` | search mode (one of `fast`, `exact`; default: `exact`) |" in text
    assert "| `--sizes N [N ...]` | sizes \\| widths |" in text
    assert "--hidden" not in text
    assert "| `build` | build an index |" in text
    # argparse names a subparser after its parent's prog and positionals
    assert "### `tool src build`" in text and "| `--out OUT` | where (required) |" in text

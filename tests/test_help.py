"""Every verb, subverb and flag says what it does in --help, in plain text (no RST markup)."""
from __future__ import annotations

import argparse

from edgefold.cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser, prog: str = "edgefold"):
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prog} {name}")


def test_every_flag_and_verb_has_help_text():
    missing = []
    for prog, parser in _parsers(build_parser()):
        if prog != "edgefold" and not parser.description:
            missing.append(f"{prog}: no description")
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_help_is_plain_text():
    for prog, parser in _parsers(build_parser()):
        text = parser.format_help()
        assert "``" not in text, f"{prog} --help shows RST markup"

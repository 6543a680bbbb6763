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


def test_an_unknown_flag_points_at_the_verbs_own_help(tmp_path, capsys):
    """``edgefold compare a.onnx b.onnx -q`` (``-q`` is fold's): one line, exit 2, and the hint names the verb's
    --help, where its flags are, not the top level's."""
    import pytest

    from edgefold.cli.main import main

    model = tmp_path / "a.onnx"
    model.write_bytes(b"")  # the flag is refused before anything reads the model
    for verb in (["compare", str(model), str(model)], ["inspect", str(model)],
                 ["run", str(model), "--source", str(tmp_path)]):
        with pytest.raises(SystemExit) as exit_:
            main([*verb, "-q"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1
        assert f"unrecognized arguments: -q (see edgefold {verb[0]} --help)" in err


def test_an_unknown_flag_of_a_subverb_points_at_the_subverbs_own_help(tmp_path, capsys):
    """``edgefold frontend dct --bogus``: the hint names ``frontend dct --help`` (where dct's flags are), for every
    verb that has subverbs - wherever the unknown flag stands."""
    import pytest

    from edgefold.cli.main import main

    nested = [(prog, sub) for prog, parser in _parsers(build_parser()) for action in parser._actions
              if isinstance(action, argparse._SubParsersAction) and prog != "edgefold"
              for sub in action.choices]
    assert ("edgefold frontend", "dct") in nested
    out = str(tmp_path / "x.onnx")
    for prog, sub in nested:
        verb = prog.split()[1:]
        for argv in ([*verb, sub, "-o", out, "--bogus"], [*verb, "--bogus", sub, "-o", out]):
            with pytest.raises(SystemExit) as exit_:
                main(argv)
            err = capsys.readouterr().err
            assert exit_.value.code == 2 and err.count("\n") == 1, err
            assert f"unrecognized arguments: --bogus (see {prog} {sub} --help)" in err, err
    assert not (tmp_path / "x.onnx").exists()


def test_an_unknown_flag_is_named_also_when_a_required_one_is_missing(tmp_path, capsys):
    """argparse reports a missing required flag first: ``frontend dct --bogus`` and a mistyped ``--ouput x.onnx``
    said only '-o/--output is required', never naming the flag it did not know."""
    import pytest

    from edgefold.cli.main import main

    for argv, unknown in ((["frontend", "dct", "--bogus"], "--bogus"),
                          (["frontend", "dct", "--ouput", str(tmp_path / "x.onnx")], "--ouput"),
                          (["fold", str(tmp_path / "m.onnx"), "--gary"], "--gary")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1, err
        assert f"unrecognized arguments: {unknown}; the following arguments are required: -o/--output" in err, err
    with pytest.raises(SystemExit):  # a flag it knows, given as a prefix, is not called unknown
        main(["frontend", "dct", "--input-d", "uint8"])
    assert "unrecognized" not in capsys.readouterr().err

"""``edgefold VERB ...``: dispatch, warnings kept off stderr without -v, and the one place errors become exit codes."""
from __future__ import annotations

import argparse
import os
import re
import sys
import warnings

from edgefold.errors import EXIT_INTERNAL, EXIT_OK, EXIT_RESOURCES, EXIT_USAGE, EdgefoldError, out_of_memory


class _Parser(argparse.ArgumentParser):
    verbs: dict[str, argparse.ArgumentParser] = {}  # noqa: RUF012 - set per instance by build_parser
    _given: list[str] = []  # noqa: RUF012 - the arguments this parser was handed (per instance)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def, override]  # noqa: ANN001, ANN201
        self._given = list(args or [])
        return super().parse_known_args(args, namespace)

    def error(self, message: str):  # type: ignore[override]
        # argparse reports a missing required flag before an unknown one: a mistyped '--ouput x.onnx' would read
        # as '-o/--output is required' and never name the typo
        unknown = [a for a in self._given if a.startswith("--") and not self._known(a.split("=")[0])]
        if unknown and message.startswith("the following arguments are required"):
            message = f"unrecognized arguments: {' '.join(unknown)}; {message}"
        print(f"edgefold: error: {printable(message)} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    def _known(self, flag: str) -> bool:
        """A flag of this parser, or an abbreviation of one (argparse takes unique prefixes)."""
        return flag == "--" or any(option.startswith(flag) for option in self._option_string_actions)


_NUMBERS = re.compile(r"^-[0-9.][0-9.eE+-]*(,[-+]?[0-9.][0-9.eE+-]*)*$")


def _normalise_argv(argv: list[str]) -> list[str]:
    """``--std -1,-1,-1`` as ``--std=-1,-1,-1``: argparse takes a negative number list for a flag. And
    ``-v`` anywhere (``edgefold fold m.onnx -v``) means the top-level flag."""
    verbose = [a for a in argv if a in ("-v", "--verbose")]
    out: list[str] = verbose[:1]
    for arg in argv:
        if arg in ("-v", "--verbose"):
            continue
        if out and out[-1].startswith("--") and "=" not in out[-1] and _NUMBERS.match(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def printable(text: str) -> str:
    """One line, no control characters: names from a model or a path are echoed safely."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def build_parser() -> _Parser:
    from edgefold.cli import bench, build, compare, demo, fold, frontend, infer, inspect, run, serve
    from edgefold.version import __version__

    parser = _Parser(prog="edgefold", description="Fold gray-camera preprocessing into the first convolution "
                     "and build TensorRT engines. Exit codes: 0 ok, 1 mismatch, 2 usage, 3 unsupported graph, "
                     "4 missing TensorRT / build failure, 5 internal error, 6 out of memory, "
                     "7 a camera lost mid-run (run), 130 Ctrl-C, 143 SIGTERM (run).")
    parser.add_argument("--version", action="version", version=f"edgefold {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for module in (fold, compare, build, infer, bench, inspect, frontend, serve, demo, run):
        module.add_parser(sub)
    parser.verbs = dict(sub.choices)
    return parser


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the sub-verb that was given (``frontend dct``), down from the verb's."""
    for action in parser._actions:  # argparse keeps sub-verbs only here
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _command(chosen, args)
    return parser


def _quiet_polygraphy(verbose: bool) -> None:
    """Polygraphy logs every comparison step; the CLI prints its own table, so keep only its errors. onnxruntime's
    own logger writes warnings (e.g. 'Removing initializer ...' from sessions its quantiser makes) straight to
    stderr: without -v only fatal ones, as edgefold reports every failure itself."""
    import onnxruntime
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.INFO if verbose else G_LOGGER.CRITICAL
    onnxruntime.set_default_logger_severity(2 if verbose else 4)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(_normalise_argv(list(sys.argv[1:] if argv is None else argv)))
    if extra:  # named by the command's own parser (``frontend dct``, not ``frontend``), so the hint is its --help
        _command(parser.verbs.get(args.verb, parser), args).error(f"unrecognized arguments: {' '.join(extra)}")
    _quiet_polygraphy(args.verbose)
    with warnings.catch_warnings():
        if not args.verbose:  # numpy/onnx/onnxruntime warnings are not the user's business; -v shows them
            warnings.simplefilter("ignore")
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM where a verb handles it (run: Terminated, 143)
        print(f"edgefold: {getattr(stop, 'what', 'interrupted')}", file=sys.stderr)
        return int(getattr(stop, "exit_code", 130))
    except BrokenPipeError:  # `edgefold inspect --json m.onnx | head`: the reader stopped reading; not a bug
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
        return EXIT_OK
    except Exception as err:  # noqa: BLE001 - the one place errors become an exit code
        if out_of_memory(err):  # MemoryError, numpy's, onnxruntime's arena (also behind a verdict): not a bug
            print(f"edgefold: error: out of memory in '{args.verb}'; nothing written. Use a smaller frame size "
                  f"(--input-size, --size, --shapes), fewer frames, or a machine with more memory (-v: the "
                  f"allocation that failed)", file=sys.stderr)
            if args.verbose:
                print(f"edgefold: {type(err).__name__}: {_first_line(err)}", file=sys.stderr)
            return EXIT_RESOURCES
        if isinstance(err, EdgefoldError):
            print(f"edgefold: error: {printable(str(err))}", file=sys.stderr)
            return err.exit_code
        if args.verbose:
            raise
        where = f"{type(err).__name__}: {_first_line(err)}"
        print(f"edgefold: internal error ({where}); nothing written. Please report it with the model; -v shows the "
              f"traceback", file=sys.stderr)
        return EXIT_INTERNAL


def _first_line(err: BaseException) -> str:
    text = str(err)
    return printable(text.splitlines()[0][:200]) if text else ""


if __name__ == "__main__":
    raise SystemExit(main())

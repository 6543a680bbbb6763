"""``edgefold VERB ...``: dispatch, logging set-up and the one place errors become exit codes."""
from __future__ import annotations

import argparse
import logging
import sys

from edgefold.errors import EXIT_INTERNAL, EXIT_USAGE, EdgefoldError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"edgefold: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from edgefold import __version__
    from edgefold.cli import bench, build, compare, demo, fold, frontend, infer, inspect

    parser = _Parser(prog="edgefold", description="Fold gray-camera preprocessing into the first convolution "
                     "and build TensorRT engines. Exit codes: 0 ok, 1 mismatch, 2 usage, 3 unsupported graph, "
                     "4 missing TensorRT / build failure, 5 internal error.")
    parser.add_argument("--version", action="version", version=f"edgefold {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for module in (fold, compare, build, infer, bench, inspect, frontend, demo):
        module.add_parser(sub)
    return parser


def _quiet_polygraphy(verbose: bool) -> None:
    """Polygraphy logs every comparison step; the CLI prints its own table, so keep only its errors."""
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.INFO if verbose else G_LOGGER.CRITICAL


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="edgefold: %(message)s")
    _quiet_polygraphy(args.verbose)
    try:
        return int(args.run(args))
    except EdgefoldError as err:
        print(f"edgefold: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("edgefold: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("edgefold: error: out of memory (a model or frame size too large for this machine)", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as err:  # noqa: BLE001 - the one place unexpected errors become an exit code
        if args.verbose:
            raise
        where = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        print(f"edgefold: internal error ({where}); nothing written. Please report it with the model; -v shows the "
              f"traceback", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())

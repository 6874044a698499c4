"""The ``sksparse-mlp`` parser and entry point; each command adds its own sub-parser."""
from __future__ import annotations

import argparse
import os
import sys

from . import _demo, _predict, _train
from ._util import PROG, CLIError, package_version


def build_parser(with_estimator_flags: bool = True) -> argparse.ArgumentParser:
    """The parser of all commands (``with_estimator_flags=False``: without the ``train`` flags
    of the estimator parameters)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Truly sparse multilayer perceptrons (SET, All-ReLU, importance "
                    "pruning, WASAP-SGD) from the command line.",
        epilog=f"Start with '{PROG} demo'. Help on a command: '{PROG} COMMAND --help'.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _demo.add_command(sub)
    _train.add_command(sub, with_estimator_flags)
    _predict.add_command(sub)
    return parser


def main(argv: list | None = None) -> int:
    """Entry point of the ``sksparse-mlp`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:  # pragma: no cover
            pass
        return 0


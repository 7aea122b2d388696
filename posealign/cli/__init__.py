"""The ``posealign`` console script: one module per subcommand, each with ``register(subparsers)``.

A subcommand module adds its parser in ``register`` and sets ``func`` to a function taking the
parsed arguments and returning the exit code. Errors a user can fix (a missing file, a malformed
annotation) are raised as ``UserError`` / ``DatasetFormatError`` and printed as one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from posealign.errors import DatasetFormatError, UserError

SUBCOMMANDS = ("train", "eval", "demo", "ablate", "data", "style", "predict", "export", "report")


def add_command_parser(subparsers, name: str, help: str, doc: str) -> argparse.ArgumentParser:
    """A subcommand's parser whose ``--help`` shows ``doc`` (its module docstring) as written."""
    return subparsers.add_parser(name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posealign", description="Unsupervised domain-adaptive 2D pose estimation.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"posealign.cli.{name}_command")
        except ModuleNotFoundError as error:
            if error.name == f"posealign.cli.{name}_command":
                continue  # subcommand not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, DatasetFormatError, FileNotFoundError) as error:
        print(f"posealign {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``posealign report RUN_DIR [RUN_DIR...] --out DIR``: a Markdown page with PNG figures."""

from __future__ import annotations

import argparse

from posealign.cli import add_command_parser


def register(subparsers) -> None:
    parser = add_command_parser(subparsers, "report", "compare finished runs: table, curves, predictions", __doc__)
    parser.add_argument("runs", nargs="+", help="run directories (with results.json)")
    parser.add_argument("--out", required=True, help="folder for report.md and its figures")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from posealign.report import write_report

    print(write_report(args.runs, args.out))
    return 0

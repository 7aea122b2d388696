"""``posealign config PRESET [--task T] [--out DIR] [key=value ...]``: the resolved config, printed.

Prints, as YAML, what ``posealign train --preset PRESET`` with the same task, ``--out`` and
overrides would save as RUN/config.yaml, and exits: a way to see what a preset means on a task
before training. A mistyped key, an unknown preset or task, or a value the training cannot use
gives the same one-line error as train. Nothing is written and no benchmark is generated; data
folders, the GPU and ImageNet weights are not looked for (train checks them).
"""

from __future__ import annotations

import argparse

from posealign.cli import add_command_parser
from posealign.config import available_presets, available_tasks


def register(subparsers) -> None:
    parser = add_command_parser(subparsers, "config", "print the config a train command would run with", __doc__)
    parser.add_argument("preset", metavar="PRESET", help=f"method preset or a YAML path; one of {available_presets()}")
    parser.add_argument(
        "--task", default=None, help=f"task preset (data, model size, schedule); one of {available_tasks()}"
    )
    parser.add_argument("--out", default=None, help="run directory, as train's --out (default: run.out of the config)")
    parser.add_argument(
        "overrides",
        nargs="*",
        default=[],  # without it argparse lists key=value as required when PRESET is missing
        metavar="key=value",
        help="config overrides, e.g. train.batch_size=16 (every key: posealign/configs/default.yaml)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from posealign.cli.train_command import checked_config, with_out
    from posealign.config import config_text

    config = checked_config(args.preset, args.task, with_out(args.overrides, args.out), on_this_machine=False)
    print(config_text(config), end="")
    return 0

"""``posealign train --preset P [--task T] [--out DIR] [--resume auto|CKPT] key=value ...``"""

from __future__ import annotations

import argparse
import json
import os
import sys

from posealign.config import available_presets, available_tasks, load_config


def add_config_arguments(parser: argparse.ArgumentParser, default_preset: str = "source_only") -> None:
    parser.add_argument(
        "--preset", default=default_preset, help=f"method preset or a YAML path; one of {available_presets()}"
    )
    parser.add_argument(
        "--task", default=None, help=f"task preset (data, model size, schedule); one of {available_tasks()}"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.batch_size=16")


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a method preset on a task", description=__doc__)
    add_config_arguments(parser)
    parser.add_argument("--out", default=None, help="run directory (default: run.out of the config)")
    parser.add_argument("--resume", default=None, help="'auto' for the run's latest checkpoint, or a checkpoint path")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from posealign.engine.trainer import TrainingInterrupted, train

    overrides = list(args.overrides) + ([f"run.out={args.out}"] if args.out else [])
    config = load_config(args.preset, args.task, overrides)
    if config.data.get("benchmark_root"):  # a task on the built-in benchmark: render it once
        from posealign.benchmark.task import ensure_benchmark

        ensure_benchmark(config)
    try:
        results = train(config, resume=args.resume)
    except TrainingInterrupted as stopped:
        print(f"posealign train: {stopped}", file=sys.stderr)
        return 143
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # rank 0 evaluates and reports
    _print_task_table(config, results)
    summary = {
        name: results[name]["pck"] for name in results if isinstance(results[name], dict) and "pck" in results[name]
    }
    print(json.dumps({"method": results["method"], "pck": summary}))
    return 0


def _print_task_table(config, results: dict) -> None:
    """The paper's table layout for this task: the keypoint set's groups + All, with its numbers."""
    from posealign.experiments import format_table

    groups = list(results["target"]["groups"]) if "target" in results else []
    print()
    print(format_table({results["method"]: results}, groups, "target"))
    reference = config.get("reference")
    if reference:
        print("paper: " + ", ".join(f"{name} {value}" for name, value in reference.items()))

"""``posealign train --preset P [--task T] [--out DIR] [--resume auto|CKPT] key=value ...``"""

from __future__ import annotations

import argparse
import json

from posealign.config import available_presets, available_tasks, load_config


def add_config_arguments(parser: argparse.ArgumentParser, default_preset: str = "source_only") -> None:
    parser.add_argument("--preset", default=default_preset, help=f"method preset or a YAML path; one of {available_presets()}")
    parser.add_argument("--task", default=None, help=f"task preset (data, model size, schedule); one of {available_tasks()}")
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
    if args.task == "benchmark":
        from posealign.data.benchmark_task import ensure_benchmark

        ensure_benchmark(config)
    try:
        results = train(config, resume=args.resume)
    except TrainingInterrupted as stopped:
        print(f"posealign train: {stopped}")
        return 143
    summary = {name: results[name]["pck"] for name in results if isinstance(results[name], dict) and "pck" in results[name]}
    print(json.dumps({"method": results["method"], "pck": summary}))
    return 0

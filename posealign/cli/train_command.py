"""posealign train --preset P [--task T] [--out DIR] [--resume auto|CKPT] key=value ...

Every setting, with its default and a comment, is in posealign/configs/default.yaml; a task preset
(configs/tasks/), then a method preset (configs/presets/), then key=value overrides are laid over it
(a later layer wins: the preset's method settings over the task's, the command line over both).
Own data: --task coco (the paper's model and schedule) or --task coco_small (the built-in benchmark's)
with data.source_root=DIR data.target_root=DIR (README, "Your own data"). posealign config shows the
resolved config without training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from posealign.cli import add_command_parser
from posealign.config import available_presets, available_tasks, load_config
from posealign.config_checks import check_overrides_act, check_values


def add_config_arguments(parser: argparse.ArgumentParser, default_preset: str = "source_only") -> None:
    parser.add_argument(
        "--preset", default=default_preset, help=f"method preset or a YAML path; one of {available_presets()}"
    )
    parser.add_argument(
        "--task", default=None, help=f"task preset (data, model size, schedule); one of {available_tasks()}"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. train.batch_size=16 (every key: posealign/configs/default.yaml)",
    )


def register(subparsers) -> None:
    parser = add_command_parser(subparsers, "train", "train a method preset on a task", __doc__)
    add_config_arguments(parser)
    parser.add_argument("--out", default=None, help="run directory (default: run.out of the config)")
    parser.add_argument("--resume", default=None, help="'auto' for the run's latest checkpoint, or a checkpoint path")
    parser.add_argument(
        "--init",
        default=None,
        metavar="CKPT",
        help="start from this pose model (train.init): a posealign checkpoint or a plain state dict; "
        "with --preset source_free, adapt it on target images alone",
    )
    parser.set_defaults(func=run)


def with_out(overrides: list[str], out: str | None) -> list[str]:
    """The command line's overrides with ``--out DIR`` as ``run.out=DIR`` (it wins over them)."""
    return list(overrides) + ([f"run.out={out}"] if out else [])


def checked_config(preset: str, task: str | None, overrides: list[str], *, on_this_machine: bool = True) -> DictConfig:
    """The run's config with every value checked. on_this_machine=False skips what depends on this
    machine (data folders, a visible GPU, ImageNet weights): ``posealign config`` only shows it."""
    config = load_config(preset, task, overrides)
    uses_benchmark = bool(config.data.get("benchmark_root"))
    check_overrides_act({preset: config}, overrides)
    check_values(config, check_roots=on_this_machine and not uses_benchmark, check_machine=on_this_machine)
    return config


def prepared_config(preset: str, task: str | None, overrides: list[str], resume: str | None) -> DictConfig:
    """The run's config with every value and the run folder checked, and the benchmark generated
    when the task uses it; nothing is written before the checks pass."""
    from posealign.engine.run_directory import check_run_directory

    config = checked_config(preset, task, overrides)
    check_run_directory(config, resume is not None)
    if config.data.get("benchmark_root"):
        from posealign.benchmark.task import ensure_benchmark

        ensure_benchmark(config)
    return config


def finished_results(config: DictConfig) -> dict | None:
    """The results of this run when its folder holds the finished run (results.json and final.pt)."""
    run_dir = Path(config.run.out)
    results, final = run_dir / "results.json", run_dir / "checkpoints" / "final.pt"
    if not (results.is_file() and final.is_file()):
        return None
    try:
        return json.loads(results.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run(args: argparse.Namespace) -> int:
    overrides = [*args.overrides, *([f"train.init={args.init}"] if args.init else [])]
    config = prepared_config(args.preset, args.task, with_out(overrides, args.out), args.resume)
    if args.resume == "auto":
        finished = finished_results(config)
        if finished is not None:
            print(
                f"posealign train: {config.run.out} is finished (results.json, checkpoints/final.pt); nothing to "
                "resume. Its numbers follow; to train again choose another --out or delete the folder.",
                file=sys.stderr,
            )
            _print_task_table(config, finished)
            return 0
    from posealign.engine.trainer import train

    results = train(config, resume=args.resume)
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

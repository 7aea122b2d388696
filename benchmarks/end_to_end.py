"""The whole training on the built-in benchmark, end to end: loader, step and trainer side by side.

    python benchmarks/end_to_end.py                          # daml, benchmark_paper_scale (ResNet-101, 256 px, bf16)
    python benchmarks/end_to_end.py --preset fast --compile  # the fast preset, student under torch.compile
    python benchmarks/end_to_end.py --amp off --workers 0 --steps 2 --warmup 1 model.backbone=resnet18 \\
        model.backbone_stages=2 model.deconv_channels=32 data.image_size=64 train.batch_size=2 \\
        "data.benchmark_sizes={source_train: 8, source_test: 2, target_train: 8, target_test: 2, target_val: 2}"  # CPU smoke

Three measurements of the same configuration, each through the trainer's own code:

- loader: images/s of the run's real batch streams (labeled and target, as a step draws them), copied
  onto the device; also shown as the ms one step's batches take to load, and the seconds until the
  streams' first batches arrive (the workers' start);
- step: ms per ``trainer.optimization_step`` (forward_backward, optimisers, LR schedule, EMA) on one
  pair of batches already on the device, per stage, with the peak GPU memory;
- trainer: ms per step of ``trainer.train`` (the loop of ``posealign train``: loader, step, logging)
  on a short schedule (two of the run's log intervals per stage, the second timed), from the times
  of the lines in its ``metrics.jsonl``, per stage; and the seconds before its first step and after
  its last.

It then projects the paper's schedule (train.pretrain_steps + train.adapt_steps of the defaults:
20k + 15k) at the trainer's rates, plus the fixed costs the short run measured (start, warm-up,
final evaluation) and one checkpoint save per ``run.checkpoint_every`` steps. ``--json`` writes
every figure to a file (benchmarks/gpu_check.py collects them).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

from posealign.cli.train_command import prepared_config
from posealign.config import load_config
from posealign.cpus import usable_cpus
from posealign.engine.data import adapts, build_run_data, to_batch
from posealign.engine.device_settings import use_channels_last
from posealign.engine.distributed import setup_distributed
from posealign.engine.trainer import build_training, next_batches, optimization_step, train


def machine() -> str:
    """CPU model and cores, GPU, torch and kornia versions: what the figures were measured on."""
    import kornia

    cpu = platform.processor() or "unknown CPU"
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})" if torch.cuda.is_available() else "no GPU"
    return f"{cpu} ({usable_cpus()} usable cores), {gpu}; torch {torch.__version__}, kornia {kornia.__version__}"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_loader(config, batches: int, warmup: int) -> dict:
    """Images/s of the run's streams alone: a step's labeled and target batches, onto the device."""
    context = setup_distributed(str(config.run.device))
    data = build_run_data(config, context)
    streams = [s for s in (data.labeled, data.target) if s is not None]
    channels_last = use_channels_last(config, context.device)
    started = time.perf_counter()
    for stream in streams:  # the workers start: their first batches
        to_batch(next(stream), context.device, channels_last)
    synchronize(context.device)
    first_batch_s = time.perf_counter() - started
    for _ in range(warmup - 1):
        for stream in streams:
            to_batch(next(stream), context.device, channels_last)
    synchronize(context.device)
    started = time.perf_counter()
    for _ in range(batches):
        for stream in streams:
            to_batch(next(stream), context.device, channels_last)
    synchronize(context.device)
    seconds = time.perf_counter() - started
    images_per_step = sum(s.batch_size for s in streams)
    return {
        "images_per_s": batches * images_per_step / seconds,
        "ms_per_step": 1000 * seconds / batches,
        "first_batch_s": first_batch_s,
    }


def measure_steps(config, steps: int, warmup: int, stages: list[str]) -> dict:
    """Ms per optimisation step of each stage on one pair of batches kept on the device; peak GPU
    memory; the seconds of one checkpoint save."""
    context = setup_distributed(str(config.run.device))
    device = context.device
    torch.manual_seed(int(config.run.seed))
    data = build_run_data(config, context)
    training = build_training(config, data, context)
    labeled, target = next_batches(training)
    training.method.set_train_mode()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result: dict = {}
    step = 0
    for stage in stages:
        if stage == "adapt":
            # A calibrated pose temperature (daml_plus) is set from source images, as the trainer does.
            training.method.start_adaptation(labeled.images)
        for _ in range(warmup):
            optimization_step(training, stage, step, labeled, target)
            step += 1
        synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            optimization_step(training, stage, step, labeled, target)
            step += 1
        synchronize(device)
        result[stage] = 1000 * (time.perf_counter() - started) / steps
    if device.type == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    started = time.perf_counter()
    training.save(step, Path(config.run.out) / "benchmark_checkpoint.pt")
    result["save_s"] = time.perf_counter() - started
    (Path(config.run.out) / "benchmark_checkpoint.pt").unlink()
    return result


def measure_trainer(config_args: tuple, interval: int, stages: list[str]) -> dict:
    """Ms per step of each stage of the real training loop, from its metrics log, at the run's own
    log interval (``interval``, its ``run.log_every``): each stage runs two intervals and the second
    is timed. A logged step
    carries the gradient-norm diagnostics (extra backward passes), so logging every step would time
    a loop no run has; at the run's interval their cost is spread as it is in training."""
    preset, task, overrides, out = config_args
    schedule = [
        f"train.pretrain_steps={2 * interval if 'pretrain' in stages else 0}",
        f"train.adapt_steps={2 * interval if 'adapt' in stages else 0}",
        "run.progress=false",
    ]
    shutil.rmtree(out, ignore_errors=True)
    config = prepared_config(preset, task, [*overrides, *schedule, f"run.out={out}"], None)
    started = time.time()
    train(config)
    ended = time.time()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    times = {r["step"]: r["time"] for r in records if r.get("kind") == "train"}
    result: dict = {"wall_s": ended - started, "log_every": interval}
    first = 0
    for stage in stages:
        result[stage] = 1000 * (times[first + 2 * interval] - times[first + interval]) / interval
        first += 2 * interval
    # Where the time outside the steps goes: before the first step (building, workers, the first
    # batches) and after the last (stage-1 cache, final checkpoint, evaluation, results).
    first_stage_ms = result[stages[0]]
    result["startup_s"] = times[interval] - started - interval * first_stage_ms / 1000
    result["finish_s"] = ended - times[first]
    result["fixed_s"] = result["wall_s"] - sum(result[stage] * 2 * interval for stage in stages) / 1000
    return result


def paper_projection(preset: str, task_config, trainer: dict, save_s: float) -> dict:
    """The paper's schedule (the defaults' step counts) at the trainer's rates, in seconds."""
    paper = load_config(preset, None, ["run.out=/tmp/posealign-paper-schedule"])
    counts = {"pretrain": int(paper.train.pretrain_steps), "adapt": int(paper.train.adapt_steps)}
    if not adapts(paper):
        counts["adapt"] = 0
    total_steps = counts["pretrain"] + counts["adapt"]
    checkpoints = total_steps // int(task_config.run.checkpoint_every)
    steps_s = sum(counts[stage] * trainer.get(stage, 0.0) / 1000 for stage in counts)
    return {
        "pretrain_steps": counts["pretrain"],
        "adapt_steps": counts["adapt"],
        "checkpoints": checkpoints,
        "seconds": steps_s + trainer["fixed_s"] + checkpoints * save_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="daml")
    parser.add_argument("--task", default="benchmark_paper_scale")
    parser.add_argument(
        "--steps",
        type=int,
        default=20,
        help="timed steps per stage of the step phase, and loader batches (the trainer phase times run.log_every steps)",
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them (at least 1)")
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default=None, help="default: the task's run.amp")
    parser.add_argument("--workers", type=int, default=None, help="default: the task's run.num_workers")
    parser.add_argument("--compile", action="store_true", help="run.compile=true (the student under torch.compile)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/posealign-end-to-end"))
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    parser.add_argument(
        "--phases", default="loader,step,trainer", help="comma-separated subset of loader,step,trainer to measure"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--steps and --warmup must be at least 1")
    phases = set(args.phases.split(","))
    if not phases or not phases <= {"loader", "step", "trainer"}:
        parser.error(f"--phases {args.phases}: a comma-separated subset of loader,step,trainer")

    overrides = [*args.overrides, f"run.device={args.device}"]
    if args.amp is not None:
        overrides.append(f"run.amp={args.amp}")
    if args.workers is not None:
        overrides.append(f"run.num_workers={args.workers}")
    if args.compile:
        overrides.append("run.compile=true")
    out = args.out.resolve()
    run_dir = out / "run"  # the benchmark is generated beside it (the task's data.benchmark_root)
    shutil.rmtree(run_dir, ignore_errors=True)
    clock = time.perf_counter()
    config = prepared_config(args.preset, args.task, [*overrides, f"run.out={run_dir}"], None)
    phase_seconds = {"config and benchmark": time.perf_counter() - clock}
    run_dir.mkdir(parents=True, exist_ok=True)
    stages = (["pretrain"] if int(config.train.pretrain_steps) > 0 else []) + (["adapt"] if adapts(config) else [])
    device = setup_distributed(str(config.run.device)).device
    batch = int(config.train.batch_size)

    print(f"machine: {machine()}")
    print(
        f"run: {config.method} on {args.task}, batch {batch} + {batch}, {config.data.image_size} px, "
        f"{config.model.backbone}, amp {config.run.amp}, channels-last {use_channels_last(config, device)}, "
        f"compile {bool(config.run.compile)}, workers {config.run.num_workers}, device {device}",
        flush=True,
    )
    loader = step = trainer = None
    clock = time.perf_counter()
    if "loader" in phases:
        loader = measure_loader(config, args.steps, args.warmup)
        phase_seconds["loader"], clock = time.perf_counter() - clock, time.perf_counter()
    if "step" in phases:
        step = measure_steps(config, args.steps, args.warmup, stages)
        phase_seconds["step"], clock = time.perf_counter() - clock, time.perf_counter()
    if "trainer" in phases:
        config_args = (args.preset, args.task, overrides, out / "trainer")
        trainer = measure_trainer(config_args, int(config.run.log_every), stages)
        phase_seconds["trainer"] = time.perf_counter() - clock
    projection = paper_projection(args.preset, config, trainer, step["save_s"]) if trainer and step else None

    print(f"\n{'':<9}{'':>12}" + "".join(f"{stage:>12}" for stage in stages))
    if loader:
        print(
            f"{'loader':<9}{loader['images_per_s']:>8.0f} im/s"
            + "".join(f"{loader['ms_per_step']:>9.1f} ms" for _ in stages)
            + f"   (a step's batches, onto the device; the first ones {loader['first_batch_s']:.1f} s)"
        )
    if step:
        peak = f"   peak {step['peak_gib']:.1f} GiB" if "peak_gib" in step else ""
        print(f"{'step':<9}{'':>12}" + "".join(f"{step[stage]:>9.1f} ms" for stage in stages) + peak)
    if trainer:
        print(f"{'trainer':<9}{'':>12}" + "".join(f"{trainer[stage]:>9.1f} ms" for stage in stages))
    if projection:
        print(
            f"\npaper schedule ({projection['pretrain_steps']} + {projection['adapt_steps']} steps) at the trainer's "
            f"rates: {projection['seconds'] / 60:.1f} min (fixed costs {trainer['fixed_s']:.0f} s as measured, "
            f"{projection['checkpoints']} checkpoints x {step['save_s']:.1f} s)"
        )
    if trainer:
        print(
            f"trainer at log_every {trainer['log_every']}: {trainer['startup_s']:.1f} s before the first step, "
            f"{trainer['finish_s']:.1f} s after the last (evaluation, checkpoints)"
        )
    print("phases (s): " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in phase_seconds.items()))
    if args.json:
        record = {
            "machine": machine(),
            "preset": args.preset,
            "task": args.task,
            "amp": str(config.run.amp),
            "compile": bool(config.run.compile),
            "batch_size": batch,
            "loader": loader,
            "step": step,
            "trainer": trainer,
            "projection": projection,
            "phase_seconds": phase_seconds,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()

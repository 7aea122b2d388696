"""What each lever of the adaptation step pays: the step with every lever, without any, and without
each one, timed in one process round-robin (one step of each in turn), so a machine whose load
drifts slows every variant alike; the medians and their ratios to the step without levers.

    python benchmarks/step_levers.py                                # daml at the demo's settings
    python benchmarks/step_levers.py --preset fast --rounds 20
    python benchmarks/step_levers.py --task benchmark_paper_scale run.amp=bf16 run.channels_last=false

The levers (each leaves the step's numbers as they were; tests/test_domain_batchnorm.py and
tests/test_step_levers.py show it):
- ``one_pass``: the student's two domains in one interleaved pass with per-domain BatchNorm
  statistics (off: one pass per domain; it is inactive anyway in the channels-last layout);
- ``batched_views``: the source, weak and strong views in one warp (off: one call per view);
- ``teacher_inference``: the teacher's forward under inference mode (off: no_grad).
On CUDA, ``--compile-mode reduce-overhead`` adds the step with every lever and the student under
``torch.compile`` in that mode (CUDA graphs), with the trainer's one host read per step (the loss
check) left out of the timed step, so the figure is what graphs could give.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import ExitStack, contextmanager

import torch
from step_cost import Stepper  # this folder is on sys.path when a script here runs

import posealign.multilevel_alignment as multilevel_alignment
from posealign.engine.device_settings import use_channels_last

LEVERS = ("one_pass", "batched_views", "teacher_inference")


def _one_call_per_view(parts):
    return [augmenter(images, keypoints, visible) for augmenter, images, keypoints, visible in parts]


@contextmanager
def levers_off(stepper: Stepper, off: set[str]):
    """The step with the levers in ``off`` replaced by the paths they replace, then restored."""
    with ExitStack() as stack:
        if "one_pass" in off:
            stepper.method.student.one_pass_domains = False
            stack.callback(setattr, stepper.method.student, "one_pass_domains", True)
        if "batched_views" in off:
            stack.callback(setattr, multilevel_alignment, "augment_together", multilevel_alignment.augment_together)
            multilevel_alignment.augment_together = _one_call_per_view
        if "teacher_inference" in off:
            stack.callback(setattr, torch, "inference_mode", torch.inference_mode)
            torch.inference_mode = torch.no_grad
        yield


def variants(compile_mode: str | None) -> dict[str, set[str]]:
    """name -> the levers switched off."""
    named = {"every lever": set(), "no lever": set(LEVERS)}
    named.update({f"without {lever}": {lever} for lever in LEVERS})
    if compile_mode:
        named[f"every lever, compiled {compile_mode}"] = set()
    return named


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="daml")
    parser.add_argument("--task", default="benchmark")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10, help="timed steps of each variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile-mode", default=None, help="CUDA: also the student under torch.compile(mode=...)")
    parser.add_argument("--only", nargs="+", metavar="VARIANT", help="these variants (default: all); 'no lever' always")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    device = torch.device(args.device)
    named = variants(args.compile_mode)
    if args.only:
        unknown = set(args.only) - set(named)
        if unknown:
            raise SystemExit(f"step_levers: no variant {sorted(unknown)}; the variants are {list(named)}")
        named = {name: off for name, off in named.items() if name in {*args.only, "no lever"}}
    steppers = {}
    for name in named:
        torch.manual_seed(0)
        steppers[name] = Stepper(args.preset, args.task, args.overrides, args.batch_size, device)
        steppers[name].method.student.one_pass_domains = True  # timed on the CPU too, where it is off by default
        if "compiled" in name:
            stepper = steppers[name]
            stepper.method.student = torch.compile(stepper.method.student, mode=args.compile_mode)
            stepper.method._check_finite = lambda losses, step: None  # the step's one host read
    config = next(iter(steppers.values())).config
    print(
        f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; {args.preset} on "
        f"{args.task}, batch {args.batch_size} + {args.batch_size}, amp {config.run.amp}, "
        f"channels-last {use_channels_last(config, device)}"
    )
    times: dict[str, list[float]] = {name: [] for name in named}
    for round_index in range(args.warmup + args.rounds):
        for name, off in named.items():
            with levers_off(steppers[name], off):
                started = time.perf_counter()
                steppers[name].step()  # synchronises on CUDA
                if round_index >= args.warmup:
                    times[name].append(time.perf_counter() - started)
    # Each round's step over the same round's step without levers: the load of that moment cancels.
    print(f"\n{'variant':<40} {'median ms':>10} {'x no lever (median of rounds)':>30}")
    for name, values in times.items():
        ratios = [mine / base for mine, base in zip(values, times["no lever"], strict=True)]
        print(f"{name:<40} {1000 * statistics.median(values):10.1f} {statistics.median(ratios):30.3f}")


if __name__ == "__main__":
    main()

"""What one adaptation step costs, and where the time goes.

    python benchmarks/step_cost.py                     # daml vs source_only at the demo's settings
    python benchmarks/step_cost.py --preset fast       # the fast preset
    python benchmarks/step_cost.py --task surreal2lsp --batch-size 8 model.pretrained=none \
        align.image.allow_random_weights=true   # timing only: random VGG-19 and decoder

Prints: the time of one adaptation step divided by one source-only step (same batch and image
size), a breakdown by component (the ``posealign.*`` regions of ``forward_backward`` and the EMA),
FLOPs per step (``torch.utils.flop_counter``) and the achieved FLOP/s, and the share of the step
spent outside the networks' forward and backward passes.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from throughput import random_batch  # this folder is on sys.path when a script here runs
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from posealign.config import load_config
from posealign.engine.device_settings import build_adam, use_channels_last
from posealign.engine.trainer import _autocast
from posealign.multilevel_alignment import MultiLevelAlignment

# Regions that are the networks themselves; everything else is bookkeeping around them.
NETWORK_REGIONS = {
    "teacher_forward",
    "student_forward",
    "discriminator_forward",
    "backward",
    "reversal_cap",  # align.feature.reversal_cap: two backward passes through the student
    "image_level",
    "optimizer",
}


class Stepper:
    def __init__(self, preset: str, task: str, overrides: list[str], batch_size: int, device) -> None:
        config = load_config(
            preset, task, [*overrides, "run.out=/tmp/posealign-step-cost", f"train.batch_size={batch_size}"]
        )
        self.method = MultiLevelAlignment(config, 16).to(device)
        # The trainer's device choices: memory format, Adam's implementation, mixed precision.
        channels_last = use_channels_last(config, device)
        if channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.method.set_train_mode()
        self.stage = "adapt" if config.mean_teacher.enabled else "pretrain"
        self.optimizer = build_adam(self.method.student.parameters(), 1e-4, device)
        self.discriminator_optimizer = (
            build_adam(self.method.discriminator.parameters(), 1e-4, device)
            if self.method.discriminator is not None
            else None
        )
        self.config = config
        size = int(config.data.image_size)
        self.source = random_batch(batch_size, size, 16, device, channels_last)
        self.target = random_batch(batch_size, size, 16, device, channels_last)
        if self.method.teacher is not None:  # a teacher as confident as a trained one, so gates and occlusion run
            self.method.teacher.head.bias.data.fill_(0.95)
        self.device = device

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.discriminator_optimizer is not None:
            self.discriminator_optimizer.zero_grad(set_to_none=True)
        autocast = _autocast(self.config, self.device)
        self.method.forward_backward(self.source, self.target, self.stage, 0.5, 0, autocast=autocast)
        with torch.profiler.record_function("posealign.optimizer"):
            self.optimizer.step()
            if self.discriminator_optimizer is not None:
                self.discriminator_optimizer.step()
        self.method.update_teacher()
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def seconds_per_step(self, steps: int) -> float:
        self.step()
        started = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - started) / steps

    def breakdown(self, steps: int) -> dict[str, float]:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(steps):
                self.step()
        seconds: dict[str, float] = defaultdict(float)
        for event in prof.events():
            if event.name.startswith("posealign."):
                seconds[event.name.removeprefix("posealign.")] += event.cpu_time_total / 1e6 / steps
        return dict(seconds)

    def flops(self) -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            self.step()
        return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="daml")
    parser.add_argument("--baseline", default="source_only")
    parser.add_argument("--task", default="benchmark")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    baseline = Stepper(args.baseline, args.task, args.overrides, args.batch_size, device)
    method = Stepper(args.preset, args.task, args.overrides, args.batch_size, device)
    print(
        f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; task {args.task}, "
        f"batch {args.batch_size} + {args.batch_size}, amp {method.config.run.amp}, "
        f"channels-last {use_channels_last(method.config, device)}"
    )

    base_time = baseline.seconds_per_step(args.steps)
    method_time = method.seconds_per_step(args.steps)
    print(f"{args.baseline} step: {base_time * 1000:8.1f} ms")
    print(f"{args.preset} step: {method_time * 1000:8.1f} ms  ({method_time / base_time:.2f} x {args.baseline})")

    parts = method.breakdown(args.steps)
    accounted = sum(parts.values())
    print(f"\nbreakdown of a {args.preset} step (profiled, {accounted * 1000:.1f} ms):")
    for name, value in sorted(parts.items(), key=lambda item: -item[1]):
        kind = "network" if name in NETWORK_REGIONS else "around the networks"
        print(f"  {name:<24} {value * 1000:8.1f} ms  {100 * value / accounted:5.1f} %  ({kind})")
    outside = sum(v for k, v in parts.items() if k not in NETWORK_REGIONS)
    print(f"outside the networks' forward/backward: {100 * outside / accounted:.1f} % of the step")

    flops = method.flops()
    print(f"\nFLOPs per {args.preset} step: {flops / 1e9:.2f} GFLOP; achieved {flops / method_time / 1e9:.1f} GFLOP/s")
    base_flops = baseline.flops()
    print(
        f"FLOPs per {args.baseline} step: {base_flops / 1e9:.2f} GFLOP; achieved {base_flops / base_time / 1e9:.1f} GFLOP/s"
    )


if __name__ == "__main__":
    main()

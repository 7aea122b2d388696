"""Training and inference throughput (images/s) of the pose network.

    python benchmarks/throughput.py                 # demo model (benchmark task) + ResNet-50/101 at 256
    python benchmarks/throughput.py --models demo   # only the demo model

Training = one supervised step (augmentation, forward, JointsMSE, backward, Adam) on a random batch;
inference = forward in eval mode without autograd. Prints one line per model and mode.
"""

from __future__ import annotations

import argparse
import time

import torch

from posealign.config import load_config
from posealign.data.batch import Batch
from posealign.multilevel_alignment import MultiLevelAlignment

MODELS = {
    "demo": ("benchmark", []),
    "resnet50-256": (
        "benchmark",
        [
            "model.backbone=resnet50",
            "model.backbone_stages=4",
            "model.deconv_channels=256",
            "data.image_size=256",
            "data.heatmap_size=64",
        ],
    ),
    "resnet101-256": (
        "benchmark",
        [
            "model.backbone=resnet101",
            "model.backbone_stages=4",
            "model.deconv_channels=256",
            "data.image_size=256",
            "data.heatmap_size=64",
        ],
    ),
}


def random_batch(batch_size: int, size: int, keypoints: int, device, channels_last: bool = False) -> Batch:
    images = torch.rand(batch_size, 3, size, size, device=device)
    return Batch(
        images=images.contiguous(memory_format=torch.channels_last) if channels_last else images,
        keypoints=torch.rand(batch_size, keypoints, 2, device=device) * (size - 1),
        visible=torch.ones(batch_size, keypoints, dtype=torch.bool, device=device),
        indices=torch.arange(batch_size),
    )


def measure(name: str, batch_size: int, steps: int, device) -> None:
    task, overrides = MODELS[name]
    config = load_config("source_only", task, [*overrides, "run.out=/tmp/posealign-benchmark"])
    method = MultiLevelAlignment(config, 16).to(device)
    size = int(config.data.image_size)
    optimizer = torch.optim.Adam(method.student.parameters(), lr=1e-4)
    batch = random_batch(batch_size, size, 16, device)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        method.forward_backward(batch, None, "pretrain", 0.0, 0)
        optimizer.step()

    @torch.no_grad()
    def inference_step() -> None:
        method.student(batch.images)

    for mode, fn in (("train", train_step), ("inference", inference_step)):
        method.student.train(mode == "train")
        fn()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        print(
            f"{name:<14} {mode:<9} batch {batch_size:>3} at {size}px: {batch_size * steps / elapsed:8.1f} images/s ({elapsed / steps * 1000:.0f} ms/step)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for name in args.models:
        batch = args.batch_size if name == "demo" or device.type == "cuda" else min(args.batch_size, 8)
        measure(name, batch, args.steps, device)


if __name__ == "__main__":
    main()

"""Which way each term of L_IM (eq. 7) pushes a heatmap: at the map's own peak, and at the labelled
keypoint. Prints, over the gated maps of a trained network on a labelled split of its own run's
config, the mean of minus each term's gradient there (positive: a descent step raises the map) and
the share of maps where it is positive.

    python benchmarks/im_term_directions.py RUN/checkpoints/final.pt [--split target_train]

The labels are read for this diagnosis only (nothing is chosen with them). tau is calibrated on the
network's maps of source images, as stage 2 does (``align.pose.calibrate_temperature_to``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf

from posealign.alignment.pose_level import calibrate_temperature
from posealign.engine.data import build_dataset, collate, to_batch
from posealign.losses.information_maximization import information_maximization_loss
from posealign.pose_model_files import load_pose_model


def first_images(config, role: str, split: str, count: int):
    """The first ``count`` crops of ``split`` of the run's ``data.<role>`` dataset, as a Batch on the CPU."""
    spec = OmegaConf.merge(config.data[role], {"split": split})
    dataset = build_dataset(spec, config, role)
    return to_batch(collate([dataset[i] for i in range(min(count, len(dataset)))]), torch.device("cpu"))


def term_gradients(maps: torch.Tensor, tau: float, gate_threshold: float) -> tuple[torch.Tensor, ...]:
    """The gate and the gradients of the paper's L_IM's two parts (times tau, as in training): the
    confidence term (L_IM at beta = 0) and -E_m's part (L_IM at beta = 1 minus it)."""
    maps = maps.detach().requires_grad_()
    full = information_maximization_loss(maps, "paper", gate_threshold, tau)
    confidence = information_maximization_loss(maps, "paper", gate_threshold, tau, diversity_weight=0.0)
    (grad_full,) = torch.autograd.grad(full, maps)
    (grad_confidence,) = torch.autograd.grad(confidence, maps)
    gate = maps.detach().amax(dim=(2, 3)) > gate_threshold
    return gate, grad_confidence, grad_full - grad_confidence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a training checkpoint (its run's config names the data)")
    parser.add_argument("--split", default="target_train", help="a labelled split of the run's target dataset")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16, help="images per batch-mean map (the training batch)")
    parser.add_argument("--fraction", type=float, default=0.7, help="the calibration's entropy fraction")
    parser.add_argument("--gate", type=float, default=0.5)
    args = parser.parse_args()

    model = load_pose_model(args.checkpoint)
    config = OmegaConf.create(model.training_config)
    config.data.preload = False  # a few hundred images are read, not the whole split
    network = model.network
    with torch.no_grad():
        tau = calibrate_temperature(
            network(first_images(config, "source", "source_train", 64).images)[0], args.fraction
        )
    target = first_images(config, "target", args.split, args.images)
    pushes: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("peak, confidence", "peak, E_m", "label, confidence", "label, E_m")
    }
    for start in range(0, len(target.images), args.batch):
        with torch.no_grad():
            maps = network(target.images[start : start + args.batch])[0]
        gate, grad_confidence, grad_diversity = term_gradients(maps, tau, args.gate)
        height, width = maps.shape[-2:]
        keypoints = target.keypoints[start : start + args.batch] / (target.images.shape[-1] / width)
        label = keypoints[..., 1].long().clamp(0, height - 1) * width + keypoints[..., 0].long().clamp(0, width - 1)
        counted = gate & target.visible[start : start + args.batch]
        for where, pixel in (("peak", maps.flatten(2).argmax(2)), ("label", label)):
            for term, grad in (("confidence", grad_confidence), ("E_m", grad_diversity)):
                pushed = -grad.flatten(2).gather(2, pixel[..., None])[..., 0]
                pushes[f"{where}, {term}"].append(pushed[counted])
    print(f"{args.checkpoint}: tau {tau:.4f} (fraction {args.fraction} of source maps), {args.split}")
    for name, values in pushes.items():
        values = torch.cat(values)
        share = (values > 0).float().mean().item()
        print(f"  at the {name:18s} mean {values.mean().item():+.2e}  raises on {share:.0%} of {len(values)} maps")


if __name__ == "__main__":
    main()

"""Which way each term of L_IM (eq. 7) pushes a heatmap: at the map's own peak, and at the labelled
keypoint. Prints, over the gated maps of a trained network on a benchmark split, the mean of minus
each term's gradient there (positive: a descent step raises the map) and the share of maps where it
is positive.

    python benchmarks/im_term_directions.py RUN/checkpoints/final.pt --root BENCHMARK_DIR

The labels are read for this diagnosis only (nothing is chosen with them). tau is calibrated on the
network's maps of source images, as stage 2 does (``align.pose.calibrate_temperature_to``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from posealign.alignment.pose_level import calibrate_temperature
from posealign.losses.information_maximization import information_maximization_loss
from posealign.pose_model_files import load_pose_model


def read_split(root: Path, split: str, count: int) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``count`` images of a COCO split as (N, 3, H, W) in [0, 1], and their keypoints (N, K, 3)."""
    coco = json.loads((root / "annotations" / f"{split}.json").read_text())
    by_image = {a["image_id"]: a for a in coco["annotations"]}
    images, keypoints = [], []
    for entry in coco["images"][:count]:
        pixels = np.asarray(Image.open(root / entry["file_name"]).convert("RGB"), dtype=np.float32) / 255
        images.append(torch.from_numpy(pixels).permute(2, 0, 1))
        keypoints.append(np.array(by_image[entry["id"]]["keypoints"], dtype=np.float32).reshape(-1, 3))
    return torch.stack(images), np.stack(keypoints)


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
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--root", type=Path, required=True, help="the benchmark folder (annotations/, images)")
    parser.add_argument("--split", default="target_train")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16, help="images per batch-mean map (the training batch)")
    parser.add_argument("--fraction", type=float, default=0.7, help="the calibration's entropy fraction")
    parser.add_argument("--gate", type=float, default=0.5)
    args = parser.parse_args()

    network = load_pose_model(args.checkpoint).network
    with torch.no_grad():
        source, _ = read_split(args.root, "source_train", 64)
        tau = calibrate_temperature(network(source)[0], args.fraction)
    images, keypoints = read_split(args.root, args.split, args.images)
    pushes: dict[str, list[float]] = {
        "peak, confidence": [],
        "peak, E_m": [],
        "label, confidence": [],
        "label, E_m": [],
    }
    for start in range(0, len(images), args.batch):
        with torch.no_grad():
            maps = network(images[start : start + args.batch])[0]
        gate, grad_confidence, grad_diversity = term_gradients(maps, tau, args.gate)
        stride = images.shape[-1] / maps.shape[-1]
        for b, k in gate.nonzero().tolist():
            x, y, visible = keypoints[start + b, k]
            if visible == 0:
                continue
            peak = divmod(int(maps[b, k].argmax()), maps.shape[-1])
            label = (min(maps.shape[-2] - 1, int(y / stride)), min(maps.shape[-1] - 1, int(x / stride)))
            for where, (row, column) in (("peak", peak), ("label", label)):
                pushes[f"{where}, confidence"].append(-grad_confidence[b, k, row, column].item())
                pushes[f"{where}, E_m"].append(-grad_diversity[b, k, row, column].item())
    print(f"{args.checkpoint}: tau {tau:.4f} (fraction {args.fraction} of source maps), {args.split}")
    for name, values in pushes.items():
        values = np.array(values)
        print(
            f"  at the {name:18s} mean {values.mean():+.2e}  raises on {np.mean(values > 0):.0%} of {len(values)} maps"
        )


if __name__ == "__main__":
    main()

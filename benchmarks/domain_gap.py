"""How far apart a trained network keeps the two domains in the features the discriminator sees: a
linear probe's held-out accuracy at telling source crops from target crops.

    python benchmarks/domain_gap.py RUN/checkpoints/final.pt [RUN2/checkpoints/final.pt ...]

For each checkpoint, the network (in evaluation mode, as it is deployed) runs on the first
``--images`` crops of the run's source test split and of its target validation split; each crop's
features at the level the feature level aligns (``deconv``, the head's input, and ``backbone``) are
pooled over space into their per-channel mean (what the layer encodes) and, beside it, also the
per-channel standard deviation (the "style" statistics AdaIN matches in image space). A logistic regression on those
vectors, trained on half the crops of each domain, is scored on the other half, then the halves
swap (two-fold). 50 % is chance: the domains look alike to a linear reader. No label is read.

Issue 11 asked why the feature level adds nothing beside the pose level on the quadrupeds: this
measures whether the pose level (and the image level) already left little gap for it to close.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from posealign.engine.data import build_dataset, collate, to_batch
from posealign.pose_model_files import load_pose_model


def first_images(config, role: str, split: str, count: int) -> torch.Tensor:
    """The first ``count`` crops of ``split`` of the run's ``data.<role>`` dataset (images only)."""
    spec = OmegaConf.merge(config.data[role], {"split": split})
    dataset = build_dataset(spec, config, role)
    return to_batch(collate([dataset[i] for i in range(min(count, len(dataset)))]), torch.device("cpu")).images


def pooled_features(network, images: torch.Tensor, layer: str, batch: int = 64) -> torch.Tensor:
    """Per crop, each channel's spatial mean, then its standard deviation, at ``layer`` (N, 2C)."""
    rows = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            _, features = network(images[start : start + batch], features_from=layer)
            flat = features.float().flatten(2)
            rows.append(torch.cat([flat.mean(2), flat.std(2)], dim=1))
    return torch.cat(rows)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-3, steps: int = 200) -> torch.Tensor:
    """Weights (and the bias last) of an L2-regularised logistic regression, by L-BFGS."""
    weights = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = x @ weights[:-1] + weights[-1]
        loss = F.binary_cross_entropy_with_logits(logits, y) + l2 * weights[:-1].square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach()


def probe(source: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Two-fold held-out accuracy and cross-entropy (nats; ln 2 = 0.693 is chance) of a logistic
    regression telling source (0) from target (1). The entropy keeps moving where accuracy saturates."""
    generator = torch.Generator().manual_seed(0)
    halves = []
    for features in (source, target):
        order = torch.randperm(len(features), generator=generator)
        halves.append((features[order[: len(order) // 2]].double(), features[order[len(order) // 2 :]].double()))
    correct, entropy, total = 0, 0.0, 0
    for fit, held in ((0, 1), (1, 0)):
        x = torch.cat([halves[0][fit], halves[1][fit]])
        y = torch.cat([torch.zeros(len(halves[0][fit])), torch.ones(len(halves[1][fit]))]).double()
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)  # standardised on the fitting half only
        weights = fit_logistic((x - mean) / std, y)
        x_held = (torch.cat([halves[0][held], halves[1][held]]) - mean) / std
        y_held = torch.cat([torch.zeros(len(halves[0][held])), torch.ones(len(halves[1][held]))]).double()
        logits = x_held @ weights[:-1] + weights[-1]
        correct += int(((logits > 0).double() == y_held).sum())
        entropy += float(F.binary_cross_entropy_with_logits(logits, y_held, reduction="sum"))
        total += len(y_held)
    return correct / total, entropy / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoints", type=Path, nargs="+", help="training checkpoints (each run's config names the data)"
    )
    parser.add_argument("--images", type=int, default=400, help="crops per domain")
    args = parser.parse_args()
    for checkpoint in args.checkpoints:
        model = load_pose_model(checkpoint)
        config = OmegaConf.create(model.training_config)
        config.data.preload = False  # a few hundred crops are read, not the whole split
        network = model.network.eval()
        source = first_images(config, "source", "source_test", args.images)
        target = first_images(config, "target", "target_val", args.images)
        cells = []
        for layer in ("deconv", "backbone"):
            source_pooled, target_pooled = (
                pooled_features(network, source, layer),
                pooled_features(network, target, layer),
            )
            channels = source_pooled.shape[1] // 2
            for pooled, width in (("mean", channels), ("mean+std", 2 * channels)):
                accuracy, entropy = probe(source_pooled[:, :width], target_pooled[:, :width])
                cells.append(f"{layer:8s} {pooled:8s} accuracy {accuracy:6.1%}  held-out entropy {entropy:.3f}")
        print(f"{checkpoint}: a linear probe, source test vs target_val, {args.images} crops each")
        print("\n".join(f"  {cell}" for cell in cells))


if __name__ == "__main__":
    main()

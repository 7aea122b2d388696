"""How far apart a network keeps the two domains in the features the feature level aligns: the
proxy A-distance (Ben-David et al. 2007; reported by Ganin et al. 2016 for DANN) of a linear
probe on each crop's per-channel feature means.

A logistic regression, fitted on half the crops of each domain, tells source crops from target
crops on the other half; then the halves swap (two-fold). With its held-out error e, the proxy
A-distance is 2 (1 - 2 e): 0 when the probe is at chance (the domains look alike to a linear
reader), 2 when it separates every crop. The held-out cross-entropy (ln 2 = 0.693 at chance) is
reported beside it because it keeps moving where the accuracy saturates. No label is read.

Why crop means: on the built-in benchmarks the release's per-pixel discriminator sits at chance
(L_adv about 2 ln 2) while this probe separates 96-99 % of held-out crops
(``benchmarks/domain_gap.py`` on their trained networks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posealign.data.pose_dataset import CroppedPoseDataset


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-3, steps: int = 200) -> torch.Tensor:
    """Weights, the bias last, of an L2-regularised logistic regression of y (0 or 1) on x, by L-BFGS."""
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


MIN_CROPS = 4  # per domain: two per half, so each half has both classes to fit


def domain_probe(source: torch.Tensor, target: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Two-fold held-out accuracy, cross-entropy (nats) and proxy A-distance of a logistic regression
    telling the rows of ``source`` (label 0) from those of ``target`` (1); (N, D) each."""
    if min(len(source), len(target)) < MIN_CROPS:
        raise ValueError(
            f"the domain probe needs {MIN_CROPS} crops per domain or more, not {len(source)} and {len(target)}"
        )
    generator = torch.Generator().manual_seed(seed)
    halves = []
    for features in (source, target):
        order = torch.randperm(len(features), generator=generator)
        halves.append((features[order[: len(order) // 2]].double(), features[order[len(order) // 2 :]].double()))

    def labelled(part: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Both domains' crops of one half, and their labels (source 0, target 1)."""
        x = torch.cat([halves[0][part], halves[1][part]])
        return x, torch.cat([torch.zeros(len(halves[0][part])), torch.ones(len(halves[1][part]))]).double()

    correct, entropy, total = 0, 0.0, 0
    for fit, held in ((0, 1), (1, 0)):
        x, y = labelled(fit)
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)  # standardised on the fitting half only
        weights = fit_logistic((x - mean) / std, y)
        x_held, y_held = labelled(held)
        logits = (x_held - mean) / std @ weights[:-1] + weights[-1]
        correct += int(((logits > 0).double() == y_held).sum())
        entropy += float(F.binary_cross_entropy_with_logits(logits, y_held, reduction="sum"))
        total += len(y_held)
    accuracy = correct / total
    return {
        "probe_accuracy": accuracy,
        "held_out_entropy": entropy / total,
        "proxy_a_distance": 2.0 * (1.0 - 2.0 * (1.0 - accuracy)),
    }


@torch.no_grad()
def crop_feature_means(
    model: nn.Module,
    dataset: CroppedPoseDataset,
    layer: str = "deconv",
    limit: int = 500,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Each of the first ``limit`` crops' per-channel means at ``layer`` (N, C), the model in eval
    mode (its mode restored), as the evaluation sees it."""
    was_training = model.training
    model.eval()
    rows = []
    for start in range(0, min(limit, len(dataset)), batch_size):
        indices = range(start, min(start + batch_size, limit, len(dataset)))
        images = torch.stack([dataset[i]["image"] for i in indices]).to(device).float().div_(255.0)
        _, features = model(images, features_from=layer)
        rows.append(features.float().mean(dim=(2, 3)).cpu())
    model.train(was_training)
    return torch.cat(rows)


def domain_gap(
    model: nn.Module,
    source: CroppedPoseDataset,
    target: CroppedPoseDataset,
    layer: str = "deconv",
    limit: int = 500,
    device: torch.device | str = "cpu",
) -> dict[str, float | int | str] | None:
    """The probe of :func:`domain_probe` on ``model``'s crop means at ``layer``, up to ``limit`` crops
    of each dataset; None when a dataset has fewer than :data:`MIN_CROPS` (nothing to measure)."""
    if min(len(source), len(target), limit) < MIN_CROPS:
        return None
    source_means = crop_feature_means(model, source, layer, limit, device=device)
    target_means = crop_feature_means(model, target, layer, limit, device=device)
    return {
        "layer": layer,
        "source_crops": len(source_means),
        "target_crops": len(target_means),
        **domain_probe(source_means, target_means),
    }

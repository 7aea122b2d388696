"""Information maximization of the pose level (eq. 7): L_IM = E_h + E_w - E_m.

E_h, E_w: mean entropies of the H and W distributions of each heatmap (eq. 6, minimised: each
keypoint confident); E_m: entropy of softmax_HW of the batch-mean heatmap of each keypoint, mean
over keypoints (maximised: predictions diverse over the batch). Two variants (METHOD.md, step 4):
the paper's (gated, log-normalised) and the released code's (ungated, divided by H*W).
With ``diversity_weight`` beta (ours; 1 is the paper and the release) the diversity term is
weighed: L_IM = E_h + E_w - beta E_m.
"""

from __future__ import annotations

import math

import torch

from posealign.alignment.pose_level import confidence_entropies, entropy


def information_maximization_loss(
    heatmaps: torch.Tensor,
    variant: str = "paper",
    gate_threshold: float = 0.5,
    temperature: float = 1.0,
    diversity_weight: float = 1.0,
) -> torch.Tensor:
    """L_IM on the student's target heatmaps (B, K, H, W) in the common frame; ``variant`` picks
    :func:`information_maximization_paper` or :func:`information_maximization_release`.
    ``temperature``: tau of every softmax (:mod:`posealign.alignment.pose_level`); 1 is the paper's.
    The loss is multiplied by tau: the gradient of an entropy of softmax(x / tau) with respect to x
    grows as 1 / tau, and the factor keeps l_im's scale whatever tau the calibration picks (as
    distillation multiplies its softened loss by T^2). At tau = 1 nothing changes.
    ``diversity_weight``: beta, the weight of E_m against the confidence term (1: eq. 7)."""
    if variant == "paper":
        return temperature * information_maximization_paper(heatmaps, gate_threshold, temperature, diversity_weight)
    if variant == "release":
        return temperature * information_maximization_release(heatmaps, temperature, diversity_weight)
    raise ValueError(f"align.pose.variant must be 'paper' or 'release', not {variant!r}")


def information_maximization_paper(
    heatmaps: torch.Tensor,
    gate_threshold: float = 0.5,
    temperature: float = 1.0,
    diversity_weight: float = 1.0,
) -> torch.Tensor:
    """L_IM = E_h / log H + E_w / log W - beta E_m / log HW over the confident keypoints only.

    A keypoint (b, k) enters when its peak exceeds ``gate_threshold``; E_h, E_w average over those,
    and E_m's mean map of keypoint k averages only the images where k is confident (keypoints never
    confident drop out). Each entropy divided by the log of its support lies in [0, 1].
    """
    _, _, height, width = heatmaps.shape
    gate = (heatmaps.detach().amax(dim=(2, 3)) > gate_threshold).to(heatmaps.dtype)  # (B, K)
    count = gate.sum().clamp(min=1.0)
    # E_h / log H + E_w / log W.
    confidence = sum(
        (values * gate).sum() / count / log_support
        for values, log_support in confidence_entropies(heatmaps, temperature)
    )
    per_keypoint = gate.sum(0).clamp(min=1.0)  # (K,)
    mean_map = (heatmaps * gate[:, :, None, None]).sum(0) / per_keypoint[:, None, None]  # (K, H, W)
    present = (gate.sum(0) > 0).to(heatmaps.dtype)
    p_m = torch.softmax(mean_map.flatten(1) / temperature, dim=1)
    e_m = (entropy(p_m) * present).sum() / present.sum().clamp(min=1.0) / math.log(height * width)
    return confidence - diversity_weight * e_m


def information_maximization_release(
    heatmaps: torch.Tensor, temperature: float = 1.0, diversity_weight: float = 1.0
) -> torch.Tensor:
    """L_IM = (E_h + E_w - beta E_m) / (H * W), every keypoint of every image, as the released code."""
    _, _, height, width = heatmaps.shape
    confidence = sum(values.mean() for values, _ in confidence_entropies(heatmaps, temperature))
    p_m = torch.softmax(heatmaps.mean(dim=0).flatten(1) / temperature, dim=1)  # (K, H*W)
    return (confidence - diversity_weight * entropy(p_m).mean()) / (height * width)

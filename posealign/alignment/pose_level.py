"""Pose level (eq. 6-7): information maximization on the H and W projections of the heatmaps."""

from __future__ import annotations

import math

import torch


def _entropy(probabilities: torch.Tensor, dim: int) -> torch.Tensor:
    return -(probabilities * torch.log(probabilities.clamp(min=1e-12))).sum(dim)


def information_maximization_loss(
    heatmaps: torch.Tensor, variant: str = "paper", gate_threshold: float = 0.5
) -> torch.Tensor:
    """L_IM = E_h + E_w - E_m on the student's target heatmaps (B, K, H, W), common frame.

    p_h = softmax_H(mean_W H_bk), p_w = softmax_W(mean_H H_bk); E_h, E_w: their mean entropies
    (minimised: each keypoint confident). E_m: entropy of softmax_HW(mean_b H_.k), mean over k
    (maximised: predictions diverse over the batch).

    variant ``paper``: only keypoints whose peak exceeds ``gate_threshold`` enter, entropies are
    divided by the log of their support (so each lies in [0, 1]). ``release``: no gate, every
    entropy divided by H*W, as the released code does.
    """
    batch, keypoints, height, width = heatmaps.shape
    p_h = torch.softmax(heatmaps.mean(dim=3), dim=2)  # (B, K, H)
    p_w = torch.softmax(heatmaps.mean(dim=2), dim=2)  # (B, K, W)
    entropy_h, entropy_w = _entropy(p_h, 2), _entropy(p_w, 2)  # (B, K)
    if variant == "paper":
        gate = (heatmaps.detach().amax(dim=(2, 3)) > gate_threshold).to(heatmaps.dtype)  # (B, K)
        count = gate.sum().clamp(min=1.0)
        e_h = (entropy_h * gate).sum() / count / math.log(height)
        e_w = (entropy_w * gate).sum() / count / math.log(width)
        # Diversity over the gated keypoints only: average each keypoint's maps over the images
        # where it is confident.
        per_keypoint = gate.sum(0).clamp(min=1.0)  # (K,)
        mean_map = (heatmaps * gate[:, :, None, None]).sum(0) / per_keypoint[:, None, None]  # (K, H, W)
        present = (gate.sum(0) > 0).to(heatmaps.dtype)
        p_m = torch.softmax(mean_map.flatten(1), dim=1)
        e_m = (_entropy(p_m, 1) * present).sum() / present.sum().clamp(min=1.0) / math.log(height * width)
        return e_h + e_w - e_m
    if variant == "release":
        p_m = torch.softmax(heatmaps.mean(dim=0).flatten(1), dim=1)  # (K, H*W)
        normaliser = height * width
        return (entropy_h.mean() + entropy_w.mean() - _entropy(p_m, 1).mean()) / normaliser
    raise ValueError(f"align.pose.variant must be 'paper' or 'release', not {variant!r}")

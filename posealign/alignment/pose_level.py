"""Pose level (eq. 6): each heatmap seen as two distributions, along H and along W.

Information maximization (eq. 7) on them is
:func:`posealign.losses.information_maximization.information_maximization_loss`.
"""

from __future__ import annotations

import torch


def axis_distributions(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """p_h = softmax_H(mean_W H_bk) (B, K, H) and p_w = softmax_W(mean_H H_bk) (B, K, W).

    heatmaps: (B, K, H, W). A confident keypoint gives two peaked distributions.
    """
    return torch.softmax(heatmaps.mean(dim=3), dim=2), torch.softmax(heatmaps.mean(dim=2), dim=2)

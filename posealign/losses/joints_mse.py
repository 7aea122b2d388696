"""Supervised heatmap loss: ``JointsMSE(H, G, w) = 0.5 * mean_{b,k,h,w} (w_bk * (H_bkhw - G_bkhw))^2``.

The weight multiplies the difference before squaring, as METHOD.md writes it; the Transfer-Learning-
Library multiplies the squared error by ``w`` instead. The two agree for the 0/1 visibility weights
used here.
"""

from __future__ import annotations

import torch


def joints_mse_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``0.5 * mean_{b,k,h,w} (w_bk * (H - G))^2``.

    pred, target: (B, K, H, W) heatmaps; weight: (B, K) or (B, K, 1), None for all ones. Returns a scalar.
    The mean runs over every element, masked ones included (a weight-0 keypoint adds 0 to the sum
    but still counts in the denominator).
    """
    diff = pred - target
    if weight is not None:
        diff = diff * weight.reshape(*weight.shape[:2], 1, 1).to(diff.dtype)
    return 0.5 * diff.pow(2).mean()

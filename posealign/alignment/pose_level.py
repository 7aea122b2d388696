"""Pose level (eq. 6): each heatmap seen as two distributions, along H and along W.

Information maximization (eq. 7) on them is
:func:`posealign.losses.information_maximization.information_maximization_loss`.

The temperature ``tau`` of softmax(x / tau) is our addition; 1 is the paper and the release.
Heatmap values lie in [0, 1], so their projections differ by a few hundredths and softmax(x) is all
but uniform: the entropies sit at their maximum, where their gradient vanishes. softmax(x / tau)
with tau of the order of those differences makes the distributions as peaked as the maps are;
:func:`calibrate_temperature` picks tau from the student's own source maps when stage 2 begins
(``align.pose.calibrate_temperature_to``).
"""

from __future__ import annotations

import math

import torch


def axis_distributions(heatmaps: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """p_h = softmax_H(mean_W H_bk / tau) (B, K, H) and p_w = softmax_W(mean_H H_bk / tau) (B, K, W).

    heatmaps: (B, K, H, W). A confident keypoint gives two peaked distributions.
    """
    return (
        torch.softmax(heatmaps.mean(dim=3) / temperature, dim=2),
        torch.softmax(heatmaps.mean(dim=2) / temperature, dim=2),
    )


def confidence_entropies(heatmaps: torch.Tensor, temperature: float = 1.0) -> list[tuple[torch.Tensor, float]]:
    """The entropies IM's confidence term minimises, E_h and E_w of the axis distributions (eq. 6),
    each (B, K) with the log of its support (its maximum)."""
    _, _, height, width = heatmaps.shape
    p_h, p_w = axis_distributions(heatmaps, temperature)
    return [(entropy(p_h), math.log(height)), (entropy(p_w), math.log(width))]


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """-sum p log p over the last dimension (0 log 0 taken as 0)."""
    return -(probabilities * torch.log(probabilities.clamp(min=1e-12))).sum(-1)


@torch.no_grad()
def axis_entropy_fractions(heatmaps: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean entropy of the H and of the W distributions over all maps, as fractions of log H and log W."""
    (e_h, log_h), (e_w, log_w) = confidence_entropies(heatmaps.float(), temperature)
    return e_h.mean() / log_h, e_w.mean() / log_w


@torch.no_grad()
def confidence_entropy_fraction(heatmaps: torch.Tensor, temperature: float) -> float:
    """The mean of the two :func:`axis_entropy_fractions`: what :func:`calibrate_temperature` sets."""
    e_h, e_w = axis_entropy_fractions(heatmaps, temperature)
    return float((e_h + e_w) / 2)


@torch.no_grad()
def calibrate_temperature(heatmaps: torch.Tensor, entropy_fraction: float, iterations: int = 60) -> float:
    """The tau at which the given maps' axis distributions have mean entropy ``entropy_fraction`` of
    the maximum (0 < f < 1), by bisection on log tau (the entropy grows with tau).

    Called on the student's maps of source images at the start of adaptation: no target label, no
    target image. A fraction in the middle puts the entropies where their gradient is large.
    """
    if not 0.0 < entropy_fraction < 1.0:
        raise ValueError(f"align.pose.calibrate_temperature_to must lie in (0, 1), not {entropy_fraction}")
    low, high = math.log(1e-6), math.log(1e3)
    for _ in range(iterations):
        middle = (low + high) / 2
        if confidence_entropy_fraction(heatmaps, math.exp(middle)) < entropy_fraction:
            low = middle
        else:
            high = middle
    return math.exp((low + high) / 2)

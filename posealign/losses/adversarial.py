"""Domain-adversarial loss of the feature level (eq. 4-5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posealign.alignment.feature_level import ReversalCap, reverse_gradient


def adversarial_loss(
    discriminator: nn.Module,
    source_features: torch.Tensor,
    target_features: torch.Tensor,
    coefficient: float,
    cap: ReversalCap | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_adv = BCE_s + BCE_t = BCE(D(R(f_s)), 0) + BCE(D(R(f_t)), 1), R the gradient reversal.

    One backward pass trains the discriminator D to tell the domains apart and, reversed (times
    -coefficient), the student to make them indistinguishable. features: (B, C, H, W) each; both
    domains go through D in one forward. Also returns D's logits (2B, 1, H', W'), detached, for
    :func:`posealign.diagnostics.discriminator_accuracies`. ``cap``: scales what the reversal sends into
    the student (:class:`posealign.alignment.feature_level.ReversalCap`; none in the paper and the release).
    """
    batch = source_features.shape[0]
    logits = discriminator(reverse_gradient(torch.cat([source_features, target_features]), coefficient, cap))
    labels = torch.zeros_like(logits)
    labels[batch:] = 1.0
    loss = F.binary_cross_entropy_with_logits(logits[:batch], labels[:batch]) + F.binary_cross_entropy_with_logits(
        logits[batch:], labels[batch:]
    )
    return loss, logits.detach()

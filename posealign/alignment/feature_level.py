"""Feature level (eq. 4-5): a domain discriminator on the student's deconv features, trained
through a gradient reversal layer so that the student learns features it cannot tell apart.

The loss itself, L_adv = BCE_s + BCE_t, is :func:`posealign.losses.adversarial.adversarial_loss`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from posealign.diagnostics import gradient_norms


class ReversalCap:
    """``align.feature.reversal_cap`` (ours): the gradient the reversal sends into the student's
    shared parameters is at most ``ratio`` times L_sup's there, step by step.

    Alone at ``l_adv`` 0.02, the feature level wrecked one quadruped seed of five: the discriminator
    won for a few steps, its reversed gradient grew to 5-8 x L_sup's and the student lost its source
    keypoints too (source PCK 30). A clip of the whole gradient keeps that step's direction; this cap
    keeps the mix, so L_sup always has a say. :meth:`measure` takes both norms before the step's
    backward (two extra backward passes, the cost of the option) and sets :attr:`factor`, by which
    the reversal then scales what it sends (:func:`reverse_gradient`). The discriminator's own
    gradient is not scaled: it learns at full rate.
    """

    def __init__(self, ratio: float) -> None:
        if not ratio > 0:
            raise ValueError(f"align.feature.reversal_cap must be a positive ratio (or null), not {ratio}")
        self.ratio = ratio
        self.factor: torch.Tensor | None = None  # None: the reversal passes its gradient unscaled

    def measure(
        self, loss_sup: torch.Tensor, weighted_adv: torch.Tensor, parameters: list[nn.Parameter]
    ) -> dict[str, torch.Tensor]:
        """Sets :attr:`factor` = min(1, ratio x |dL_sup/dtheta| / |d(l_adv L_adv)/dtheta|) over
        ``parameters`` (the student's shared ones), and returns both numbers to log:
        ``reversal_ratio`` (the uncapped norm over L_sup's) and ``reversal_factor``.
        Under fp16 pass both terms times the loss scale (``scaler.scale``): the ratio does not change,
        their gradients do not underflow, and the scale is never read on the host."""
        self.factor = None  # measure what the reversal sends uncapped
        norms = gradient_norms({"sup": loss_sup, "adv": weighted_adv}, parameters)
        ratio = norms["grad_adv"] / norms["grad_sup"].clamp(min=1e-30)
        self.factor = (self.ratio / ratio.clamp(min=1e-30)).clamp(max=1.0)
        return {"reversal_ratio": ratio, "reversal_factor": self.factor}


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: torch.Tensor, coefficient: float, cap: ReversalCap | None) -> torch.Tensor:
        ctx.coefficient = coefficient
        ctx.cap = cap
        return features.view_as(features)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        reversed_grad = -ctx.coefficient * grad_output
        if ctx.cap is not None and ctx.cap.factor is not None:
            reversed_grad = reversed_grad * ctx.cap.factor.to(reversed_grad.dtype)
        return reversed_grad, None, None


def reverse_gradient(features: torch.Tensor, coefficient: float = 1.0, cap: ReversalCap | None = None) -> torch.Tensor:
    """Identity forward; gradient times -coefficient backward (Ganin & Lempitsky 2015), times the
    ``cap``'s factor of the step when one is given (:class:`ReversalCap`)."""
    return _GradientReversal.apply(features, coefficient, cap)


def grl_coefficient(schedule: str, progress: float, base: float = 1.0) -> float:
    """lambda: ``constant`` (released code) or the DANN ramp 2 / (1 + exp(-10 p)) - 1 over progress p."""
    if schedule == "constant":
        return base
    if schedule == "dann":
        return base * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)
    raise ValueError(f"align.feature.grl must be 'constant' or 'dann', not {schedule!r}")


class DomainDiscriminator(nn.Module):
    """Per-pixel discriminator of the released code: conv3x3 C->256, LReLU(0.2), 256->128, LReLU,
    128->128, LReLU, 128->1 logits. ``stride`` > 1 average-pools the features first (the ``fast``
    preset: a quarter of the pixels at stride 2)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...] = (256, 128, 128), stride: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers += [nn.Conv2d(previous, width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            previous = width
        layers.append(nn.Conv2d(previous, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)
        self.stride = stride

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            features = F.avg_pool2d(features, self.stride)
        return self.net(features)

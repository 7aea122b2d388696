"""What each alignment level does to the student, measured during adaptation.

Three kinds of number, logged with the losses and plotted by ``posealign report``:

- ``grad_<term>``: the norm of the gradient that one weighted term of eq. 8 sends into the
  student's shared parameters (backbone and deconvolution head, everything under the features the
  discriminator sees), beside ``grad_loss_sup``'s and ``grad_loss_cons``'s. A level whose norm is a
  thousandth of L_sup's moves nothing, whatever its loss value;
- ``im_entropy_h`` / ``_w`` / ``_m``: the pose level's entropies (eq. 6-7) of the student's target
  maps as a fraction of their maximum (log H, log W, log HW). At 1.0 the distributions are
  uniform, where the entropy's gradient vanishes;
- ``discriminator_accuracy_source`` / ``_target``: the feature level's discriminator per domain;
  0.5 on both is chance, the domains not told apart.

The gradient norms cost one extra backward per term, so they are taken on the logged steps only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from posealign.alignment.pose_level import axis_entropy_fractions, entropy


def shared_parameters(student: nn.Module) -> list[nn.Parameter]:
    """The parameters every term of eq. 8 reaches: all but the final 1x1 heatmap layer."""
    head = {id(p) for p in student.head.parameters()}
    return [p for p in student.parameters() if p.requires_grad and id(p) not in head]


def gradient_norms(
    weighted_terms: dict[str, torch.Tensor], parameters: list[nn.Parameter], scale: float = 1.0
) -> dict[str, torch.Tensor]:
    """``grad_<name>``: the L2 norm over ``parameters`` of d(term)/d(theta) for each weighted term.

    ``torch.autograd.grad`` with ``retain_graph``: nothing is accumulated into ``.grad``, so the
    step's own backward and its update are unchanged. ``scale``: the fp16 loss scale the terms
    carry (their gradients would underflow without it); the norms are divided by it.
    """
    norms = {}
    for name, term in weighted_terms.items():
        if not term.requires_grad:
            continue
        grads = torch.autograd.grad(term * scale, parameters, retain_graph=True, allow_unused=True)
        squares = [g.detach().float().pow(2).sum() for g in grads if g is not None]
        total = torch.stack(squares).sum().sqrt() / scale if squares else term.new_zeros(()).float()
        norms[f"grad_{name}"] = total
    return norms


@torch.no_grad()
def entropy_fractions(heatmaps: torch.Tensor, temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """Mean entropies of the H and W distributions of each map and of the batch-mean map (eq. 6-7),
    each divided by its maximum: 1.0 is uniform (no gradient), 0.0 one-hot."""
    _, _, height, width = heatmaps.shape
    e_h, e_w = axis_entropy_fractions(heatmaps, temperature)
    p_m = torch.softmax(heatmaps.float().mean(dim=0).flatten(1) / temperature, dim=1)
    return {"im_entropy_h": e_h, "im_entropy_w": e_w, "im_entropy_m": entropy(p_m).mean() / math.log(height * width)}


@torch.no_grad()
def discriminator_accuracies(logits: torch.Tensor, source_count: int) -> dict[str, torch.Tensor]:
    """Pixel accuracy of the domain discriminator on each domain (source label 0, target 1)."""
    return {
        "discriminator_accuracy_source": (logits[:source_count] < 0).float().mean(),
        "discriminator_accuracy_target": (logits[source_count:] > 0).float().mean(),
    }

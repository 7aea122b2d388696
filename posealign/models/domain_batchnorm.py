"""BatchNorm with each domain's own batch statistics in one pass over a batch of both domains.

The released code runs the student once per domain (``student(x_s)``, then ``student(x_t)``), so
each BatchNorm normalises a domain with that domain's statistics and updates its running
statistics twice, source first. Two half-size passes use an accelerator worse than one full pass;
this module gives the same numbers from one pass:

- the batch enters interleaved, sample ``n = b * D + d`` from domain ``d`` (:func:`interleave`), so
  a contiguous (D*B, C, H, W) activation *is* a (B, D*C, H, W) tensor whose channel ``d * C + c`` is
  channel ``c`` of domain ``d``; one ``F.batch_norm`` over that view normalises every domain with
  its own statistics, and the convolutions in between never see the difference;
- the running statistics end as the D sequential updates leave them: the kernel updates domain
  0's copy from the running value (exactly the first pass's update) and the others' copies from
  zero (``momentum * statistic``); chaining ``r <- (1 - momentum) r + momentum * statistic`` over
  the domains, in order, gives the last pass's value, equal to the sequential passes' within float
  rounding (the CPU kernel accumulates that update in double).

The view needs the contiguous (NCHW) layout; a channels-last batch, a SyncBatchNorm (under
torchrun with ``run.sync_batchnorm``) or a cumulative-average BatchNorm (momentum None) runs one
pass per domain instead (:func:`one_pass_possible`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class DomainBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state-dict keys) that, while
    :func:`per_domain_statistics` sets ``domains`` > 1 and in train mode, treats its interleaved
    input as that many domains, each normalised with its own batch statistics."""

    domains = 1

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        domains = self.domains
        if domains == 1 or not self.training or not self.track_running_stats or self.momentum is None:
            return super().forward(input)
        self._check_input_dim(input)
        batch, channels = input.shape[:2]
        merged = input.contiguous().view(batch // domains, domains * channels, *input.shape[2:])
        # Domain 0 starts from the running value, the others from zero (see the module's docstring).
        zeros = self.running_mean.new_zeros((domains - 1) * channels)
        running_mean = torch.cat([self.running_mean, zeros])
        running_var = torch.cat([self.running_var, zeros])
        output = F.batch_norm(
            merged,
            running_mean,
            running_var,
            self.weight.repeat(domains) if self.weight is not None else None,
            self.bias.repeat(domains) if self.bias is not None else None,
            True,
            self.momentum,
            self.eps,
        )
        with torch.no_grad():
            keep = 1.0 - self.momentum
            mean, var = running_mean[:channels], running_var[:channels]
            for domain in range(1, domains):
                part = slice(domain * channels, (domain + 1) * channels)
                mean = keep * mean + running_mean[part]
                var = keep * var + running_var[part]
            self.running_mean.copy_(mean)
            self.running_var.copy_(var)
            self.num_batches_tracked.add_(domains)
        return output.view(input.shape)


@contextmanager
def per_domain_statistics(model: nn.Module, domains: int) -> Iterator[None]:
    """Within: every :class:`DomainBatchNorm2d` of ``model`` reads its input as ``domains`` interleaved domains."""
    norms = [module for module in model.modules() if isinstance(module, DomainBatchNorm2d)]
    for norm in norms:
        norm.domains = domains
    try:
        yield
    finally:
        for norm in norms:
            norm.domains = 1


def one_pass_possible(model: nn.Module, images: torch.Tensor) -> bool:
    """Whether one interleaved pass gives ``model`` per-domain statistics: every BatchNorm is a
    :class:`DomainBatchNorm2d` with a momentum, and the batch is in the contiguous layout (a
    channels-last activation, from a channels-last batch or network, would be copied at every
    BatchNorm to take the channel view)."""
    if not images.is_contiguous():
        return False
    # The augmentation hands over contiguous images even when the network is channels-last; its
    # convolutions then give channels-last activations, and every BatchNorm's channel view would copy.
    convolutions = [module.weight for module in model.modules() if isinstance(module, nn.Conv2d)]
    if any(not weight.is_contiguous() for weight in convolutions):
        return False
    norms = [module for module in model.modules() if isinstance(module, _BatchNorm)]
    return all(type(norm) is DomainBatchNorm2d and norm.momentum is not None for norm in norms)


def interleave(batch: torch.Tensor, domains: int) -> torch.Tensor:
    """(D*B, ...) as D consecutive domain parts -> sample ``b * D + d`` is part d's sample b."""
    return batch.unflatten(0, (domains, -1)).transpose(0, 1).flatten(0, 1)


def deinterleave(batch: torch.Tensor, domains: int) -> torch.Tensor:
    """The inverse of :func:`interleave`: back to D consecutive domain parts."""
    return batch.unflatten(0, (-1, domains)).transpose(0, 1).flatten(0, 1)

"""The network inside its training wrappers, for state dicts and the EMA."""

from __future__ import annotations

from torch import nn
from torch.nn.parallel import DistributedDataParallel


def unwrap_model(module: nn.Module) -> nn.Module:
    """``module`` without DistributedDataParallel (``.module``) and ``torch.compile`` (``._orig_mod``).

    The trainer stacks them as ``compile(DDP(student))``; every layer is peeled off, so state dicts
    carry the plain network's keys (a compiled student's own keys start with ``_orig_mod.``, which
    the teacher, a plain copy, would not load).
    """
    while True:
        if isinstance(module, DistributedDataParallel):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), nn.Module):
            module = module._orig_mod
        else:
            return module

"""Choices that depend on the device a run trains on: the memory format of images and networks,
and which implementation of Adam steps the parameters.

Each is a speed lever on a GPU that leaves a CPU run computing exactly what it computed before:
channels-last is on by default only on CUDA under mixed precision, and the fused Adam kernel is
used only for CUDA parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from omegaconf import DictConfig

from posealign.errors import UserError

CHANNELS_LAST_CHOICES = ("auto", True, False)


def use_channels_last(config: DictConfig, device: torch.device) -> bool:
    """``run.channels_last``: true, false, or ``auto`` = true on CUDA under bf16/fp16 autocast.

    cuDNN's tensor-core convolutions read NHWC natively, so a half-precision step on a GPU skips
    the layout transposes around every convolution; on the CPU and in fp32 the gain is not
    general, so ``auto`` keeps the contiguous layout there (a task may still set ``true``).
    """
    value = config.run.channels_last
    if value == "auto":
        return device.type == "cuda" and config.run.amp in ("bf16", "fp16")
    if isinstance(value, bool):
        return value
    raise UserError(f"run.channels_last={value}: choose one of {list(CHANNELS_LAST_CHOICES)}")


def build_adam(params: Iterable[torch.Tensor], lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel for CUDA parameters (one launch steps every tensor), torch's
    default (foreach) implementation elsewhere.

    A checkpoint written with the other implementation (a CPU run resumed on a GPU, or the
    reverse) loads into it and keeps this device's choice: :func:`keep_own_implementation`.
    """
    optimizer = torch.optim.Adam(params, lr=lr, fused=True if device.type == "cuda" else None)
    optimizer.register_load_state_dict_pre_hook(keep_own_implementation)
    return optimizer


def keep_own_implementation(optimizer: torch.optim.Optimizer, state_dict: dict) -> dict:
    """``load_state_dict`` pre-hook: the saved groups' ``fused``/``foreach`` flags give way to the
    optimiser's own, so the loaded step counters are placed where this implementation keeps them
    (on the parameters' device when fused, on the CPU otherwise)."""
    groups = []
    for own, saved in zip(optimizer.param_groups, state_dict["param_groups"], strict=True):
        groups.append({**saved, "fused": own.get("fused"), "foreach": own.get("foreach")})
    return {**state_dict, "param_groups": groups}

"""The batch a training step consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """A collated batch on the training device: images in [0, 1] (B, 3, S, S), keypoints (B, K, 2)
    in crop pixels, visible (B, K) bool, dataset indices (B,) (the key of the target style cache)."""

    images: torch.Tensor
    keypoints: torch.Tensor
    visible: torch.Tensor
    indices: torch.Tensor

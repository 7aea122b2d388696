"""Pseudo-label consistency (eq. 3)."""

from __future__ import annotations

import torch

CONSISTENCY_MASKS = ("valid_pixels", "none", "zero_outside")


def consistency_loss(
    student: torch.Tensor,
    pseudo_labels: torch.Tensor,
    gate: torch.Tensor,
    valid: torch.Tensor,
    mask: str = "valid_pixels",
) -> torch.Tensor:
    """L_cons = mean_{b,h,w} mean_k (m_bk * (A_s^-1 S(O(A_s x)) - N(A_w^-1 T(A_w x))))^2.

    student, pseudo_labels: (B, K, H, W) in the common frame; gate: (B, K) bool, the teacher's
    confident keypoints; valid: (B, 1, H, W) bool, pixels both views saw.
    ``mask``: ``valid_pixels`` takes the mean over the valid pixels only (the released ``ConsLoss``
    given a ``valid_mask``); ``none`` over every pixel, valid or not (the released training, which
    passes no mask); ``zero_outside`` over every pixel with the invalid ones counted as zero (how
    runs saved without this option trained: their ``config.yaml`` has no ``consistency_mask``).
    """
    if mask not in CONSISTENCY_MASKS:
        raise ValueError(f"mean_teacher.consistency_mask must be one of {CONSISTENCY_MASKS}, not {mask!r}")
    per_pixel = ((gate[:, :, None, None].to(student.dtype) * (student - pseudo_labels)) ** 2).mean(dim=1)  # (B, H, W)
    if mask == "none":
        return per_pixel.mean()
    valid = valid[:, 0].to(per_pixel.dtype)
    if mask == "zero_outside":
        return (per_pixel * valid).mean()
    # An all-invalid batch gives 0 (the released code's mean of an empty selection would be NaN).
    return (per_pixel * valid).sum() / valid.sum().clamp(min=1.0)

"""Pseudo-label consistency (eq. 3)."""

from __future__ import annotations

import torch


def consistency_loss(
    student: torch.Tensor, pseudo_labels: torch.Tensor, gate: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """L_cons = mean_{b,h,w} mean_k (m_bk * (A_s^-1 S(O(A_s x)) - N(A_w^-1 T(A_w x))))^2.

    student, pseudo_labels: (B, K, H, W) in the common frame; gate: (B, K) bool, the teacher's
    confident keypoints; valid: (B, 1, H, W) bool, pixels both views saw (zero elsewhere).
    """
    weight = gate[:, :, None, None].to(student.dtype) * valid.to(student.dtype)
    return ((weight * (student - pseudo_labels)) ** 2).mean()

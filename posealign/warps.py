"""Affine warps of images, keypoints and heatmaps, batched (one ``grid_sample`` per call).

Matrices are (B, 3, 3) and map the un-augmented ("common") frame to a view, in input pixels with
pixel centres at integer coordinates. Heatmaps use coordinates divided by the network's stride.
"""

from __future__ import annotations

import torch
from kornia.geometry.linalg import transform_points
from kornia.geometry.transform import warp_affine


def warp_images(images: torch.Tensor, matrices: torch.Tensor, size: int) -> torch.Tensor:
    """The view of each image under its matrix; pixels from outside the image are zero."""
    return warp_affine(images, matrices[:, :2], (size, size), mode="bilinear", padding_mode="zeros", align_corners=True)


def transform_keypoints(keypoints: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """(B, K, 2) points in the common frame -> the same points in each view."""
    return transform_points(matrices, keypoints)


def heatmap_matrices(matrices: torch.Tensor, stride: float) -> torch.Tensor:
    """Input-pixel matrices expressed on the heatmap grid: D M D^-1 with D = diag(1/stride)."""
    if stride == 1:
        return matrices
    # Filled on the device: a tensor made from a host list is a blocking copy that waits for the GPU.
    scale = torch.ones(3, device=matrices.device, dtype=matrices.dtype)
    scale[:2] = 1.0 / stride
    return scale.view(1, 3, 1) * matrices / scale.view(1, 1, 3)


def inverse_warp_heatmaps(
    heatmaps: torch.Tensor, matrices: torch.Tensor, stride: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """A^-1: heatmaps predicted on views (B, K, h, w) -> the common frame, plus a validity mask.

    Returns (heatmaps (B, K, h, w), valid (B, 1, h, w) bool): a common-frame pixel is valid when it
    maps inside the view, i.e. the network actually saw it. The mask rides along as one extra
    channel so both come from a single warp.
    """
    batch, _, height, width = heatmaps.shape
    # inv_ex: the same inverse without inv's singularity check, which reads a flag back from the GPU
    # (these matrices are invertible: a zoom > 0 times a rotation and a shear).
    view_to_common = torch.linalg.inv_ex(heatmap_matrices(matrices, stride)).inverse
    ones = torch.ones(batch, 1, height, width, device=heatmaps.device, dtype=heatmaps.dtype)
    warped = warp_affine(
        torch.cat([heatmaps, ones], dim=1),
        view_to_common[:, :2],
        (height, width),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
    return warped[:, :-1], warped[:, -1:] > 0.999

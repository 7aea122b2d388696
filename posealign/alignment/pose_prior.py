"""The source pose prior of the source-free stage 2, after POST's prior-guided self-training: a
Gaussian over the source's poses, each centred and scaled to unit size, fitted from the source labels
alone when stage 1 ends and kept in the checkpoint. In stage 2 the teacher's pseudo-poses of a batch
that lie farthest from it (Mahalanobis distance) leave the consistency loss: on the built-in human
benchmark the quarter of the source model's target poses nearest the prior has 2.5 x the keypoint
accuracy of the farthest quarter. The threshold is relative to the batch, as the released
confidence gate's is: the target's poses lie far outside the source's (the median 4 x the farthest
source pose), so a threshold taken from the source's own distances would drop them all.
"""

from __future__ import annotations

import math

import torch

# Shrinkage towards the identity of the normalised poses' covariance: a body plan's joints move
# together, so the raw covariance is near singular (and a set of few poses makes it exactly so).
_SHRINKAGE = 1e-2


def normalised_poses(keypoints: torch.Tensor) -> torch.Tensor:
    """(N, K, 2) -> (N, 2K): each pose centred at its mean keypoint and divided by its root mean
    square distance from it, so the prior sees the body's shape, not where or how large it is."""
    centred = keypoints.float() - keypoints.float().mean(dim=1, keepdim=True)
    scale = centred.pow(2).sum(dim=2).mean(dim=1).sqrt().clamp(min=1e-6)
    return (centred / scale[:, None, None]).flatten(1)


def fit_pose_prior(keypoints: torch.Tensor, visible: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """The prior from labeled poses (N, K, 2) with ``visible`` (N, K): mean and precision of the
    normalised poses. Only poses with every keypoint visible are used; None when there are fewer of
    them than twice the pose's dimension."""
    whole = visible.bool().all(dim=1)
    poses = normalised_poses(keypoints[whole])
    if poses.shape[0] < 2 * poses.shape[1]:
        return None
    mean = poses.mean(dim=0)
    centred = poses - mean
    covariance = centred.T @ centred / (poses.shape[0] - 1)
    precision = torch.linalg.inv(covariance + _SHRINKAGE * torch.eye(poses.shape[1]))
    return {"mean": mean, "precision": precision}


def pose_distances(prior: dict[str, torch.Tensor], keypoints: torch.Tensor) -> torch.Tensor:
    """Mahalanobis distance (N,) of each pose (N, K, 2) from the prior."""
    centred = normalised_poses(keypoints) - prior["mean"].to(keypoints.device)
    precision = prior["precision"].to(keypoints.device)
    return ((centred @ precision) * centred).sum(dim=1).clamp(min=0).sqrt()


def plausible_poses(prior: dict[str, torch.Tensor], keypoints: torch.Tensor, quantile: float) -> torch.Tensor:
    """(N,) bool: the poses (N, K, 2) of a batch no farther from the prior than its ``quantile``-th
    distance (the k-th smallest, k = ceil(quantile x N))."""
    distances = pose_distances(prior, keypoints)
    k = max(1, math.ceil(quantile * len(distances)))
    return distances <= distances.kthvalue(k).values

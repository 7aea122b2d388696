"""The mean teacher: EMA teacher (eq. 9), its pseudo-labels N(T(.)), the confidence gate, and the
keypoint occlusion O applied to the student's view.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from posealign.heatmaps import gaussian_at_argmax

BN_MODES = ("train_teacher", "copy", "average")


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of the student: it only ever changes by the EMA update."""
    teacher = copy.deepcopy(student)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float, bn_mode: str = "train_teacher") -> None:
    """theta_T <- m theta_T + (1 - m) theta_S on parameters (eq. 9); BatchNorm buffers by ``bn_mode``.

    bn_mode: ``train_teacher`` leaves the teacher's buffers alone (the released code runs the
    teacher in train mode, so they track the target batches it sees); ``copy`` takes the student's;
    ``average`` applies the same EMA to them.
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, not {bn_mode!r}")
    teacher_params = [p for p in teacher.parameters()]
    student_params = [p.detach() for p in student.parameters()]
    torch._foreach_mul_(teacher_params, momentum)
    torch._foreach_add_(teacher_params, student_params, alpha=1.0 - momentum)
    if bn_mode == "train_teacher":
        return
    # Multi-tensor ops, as for the parameters: one launch per group of buffers instead of one per buffer.
    pairs = list(zip(teacher.buffers(), student.buffers(), strict=True))
    averaged = [(t, s) for t, s in pairs if bn_mode == "average" and t.is_floating_point()]
    copied = [(t, s) for t, s in pairs if not (bn_mode == "average" and t.is_floating_point())]
    if copied:
        torch._foreach_copy_([t for t, _ in copied], [s for _, s in copied])
    if averaged:
        teacher_buffers = [t for t, _ in averaged]
        torch._foreach_mul_(teacher_buffers, momentum)
        torch._foreach_add_(teacher_buffers, [s for _, s in averaged], alpha=1.0 - momentum)


def teacher_pseudo_labels(heatmaps: torch.Tensor, mode: str, sigma: float) -> torch.Tensor:
    """N(T(x)): the paper's normalised heatmap (unit peak, negatives cut) or the released code's
    ``rectify`` (a unit-peak Gaussian of the target sigma at the argmax, cut to its (6 sigma + 1)^2
    window; a map whose maximum is <= 0 puts it at pixel (0, 0)). (B, K, H, W) -> same."""
    if mode == "normalize":
        positive = heatmaps.clamp(min=0)
        return positive / positive.amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)
    if mode == "gaussian":
        return gaussian_at_argmax(heatmaps, sigma)
    raise ValueError(f"mean_teacher.teacher_target must be 'normalize' or 'gaussian', not {mode!r}")


def confidence_gate(peaks: torch.Tensor, mode: str, quantile: float = 0.5, random_range=(0.3, 0.7)) -> torch.Tensor:
    """Which keypoints (b, k) enter the consistency loss, from the teacher's peak activations (B, K).

    ``quantile`` (released): peaks strictly above the k-th smallest of all B*K peaks with
    ``k = int(quantile * B * K)`` (``torch.kthvalue`` as train_human.py calls it), i.e. the top half at
    0.5 when B*K is even and the peaks distinct.
    ``random`` (paper): a threshold drawn each step, U(lo, hi).
    """
    if mode == "quantile":
        flat = peaks.flatten()
        k = max(1, int(quantile * flat.numel()))
        threshold = flat.kthvalue(k).values
        return peaks > threshold
    if mode == "random":
        low, high = random_range
        threshold = torch.rand((), device=peaks.device) * (high - low) + low
        return peaks > threshold
    raise ValueError(f"mean_teacher.gate must be 'quantile' or 'random', not {mode!r}")


def occlude_keypoints(
    images: torch.Tensor,
    keypoints: torch.Tensor,
    peaks: torch.Tensor,
    probability: float,
    min_peak: float,
    half_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """O: for each image, with ``probability``, if some keypoint's teacher peak >= ``min_peak``, pick
    one of those at random and paste over the square around it a same-size patch taken at a random
    place of the same image. Batched: one gather for the whole batch.

    The square is the released code's: rows and columns ``[c - half_size, c + half_size)`` (20 x 20 at
    half_size 10), cut at the image border; the patch has the cut square's size and lies wholly inside
    the image, its corner uniform over the places it fits (``np.random.randint(S - w + 1)``).
    images (B, C, S, S); keypoints (B, K, 2) in this view's pixels (integer part taken); peaks (B, K).
    Returns (occluded images, chosen keypoint index per image or -1).
    """
    batch, channels, size, _ = images.shape
    device = images.device
    eligible = peaks >= min_peak
    # A random eligible keypoint per image: argmax of uniform noise restricted to eligible ones.
    scores = torch.rand(peaks.shape, device=device).masked_fill(~eligible, -1.0)
    chosen = scores.argmax(dim=1)
    apply = eligible.any(dim=1) & (torch.rand(batch, device=device) < probability)
    centre = keypoints[torch.arange(batch, device=device), chosen].floor().long()  # (B, 2) x, y
    low = (centre - half_size).clamp(0, size)  # (B, 2) first row/column of the square
    high = (centre + half_size).clamp(0, size)  # (B, 2) one past the last
    extent = high - low
    corner = (torch.rand(batch, 2, device=device) * (size - extent + 1)).floor().long()  # patch's first x, y

    coords = torch.arange(size, device=device)
    x = coords.view(1, 1, size)
    y = coords.view(1, size, 1)
    inside = (
        (x >= low[:, 0].view(batch, 1, 1)) & (x < high[:, 0].view(batch, 1, 1))
        & (y >= low[:, 1].view(batch, 1, 1)) & (y < high[:, 1].view(batch, 1, 1))
        & apply.view(batch, 1, 1)
    )  # fmt: skip
    source_x = (x - low[:, 0].view(batch, 1, 1) + corner[:, 0].view(batch, 1, 1)).clamp(0, size - 1)
    source_y = (y - low[:, 1].view(batch, 1, 1) + corner[:, 1].view(batch, 1, 1)).clamp(0, size - 1)
    flat_index = (source_y * size + source_x).view(batch, 1, size * size).expand(batch, channels, size * size)
    patches = images.flatten(2).gather(2, flat_index).view_as(images)
    occluded = torch.where(inside.unsqueeze(1), patches, images)
    return occluded, torch.where(apply, chosen, torch.full_like(chosen, -1))

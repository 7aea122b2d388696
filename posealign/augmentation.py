"""The augmentation A of METHOD.md, batched: random-resized square crop, rotation, shear_x,
translation and scale composed into one affine per sample, then colour jitter.

The affine is returned with the views so that keypoints follow it and predictions can be warped
back with its exact inverse (the mean teacher's A_w^-1 and A_s^-1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import kornia.augmentation as K
import torch

from posealign.warps import transform_keypoints, warp_images


@dataclass(frozen=True)
class ViewAugmentation:
    """Ranges of one view's augmentation (the released code uses one for every view)."""

    rotation: float = 60.0  # degrees, U(-r, r)
    shear: float = 30.0  # degrees, shear_x U(-s, s)
    translate: float = 0.05  # fraction of the side, per axis
    scale: tuple[float, float] = (0.6, 1.3)
    crop_area: tuple[float, float] = (0.6, 1.3)  # random-resized square crop, area fraction
    color_jitter: float = 0.25

    @classmethod
    def from_config(cls, node) -> ViewAugmentation:
        return cls(
            rotation=float(node.rotation),
            shear=float(node.shear),
            translate=float(node.translate),
            scale=tuple(float(v) for v in node.scale),
            crop_area=tuple(float(v) for v in node.crop_area),
            color_jitter=float(node.color_jitter),
        )


def _uniform(low: float, high: float, batch: int, device) -> torch.Tensor:
    return torch.rand(batch, device=device) * (high - low) + low


def sample_affine_matrices(batch: int, size: int, view: ViewAugmentation, device) -> torch.Tensor:
    """(B, 3, 3) matrices mapping the common frame to the augmented view (input pixels).

    A square crop of area ``a`` of the image, resized to the full side, is a zoom by 1/sqrt(a) about
    a random centre; it composes with the scale, rotation, shear and translation about the image
    centre into a single affine, so the image is resampled once.
    """
    centre = (size - 1) / 2.0
    area = _uniform(*view.crop_area, batch, device)
    zoom = _uniform(*view.scale, batch, device) / area.sqrt()
    # The crop's centre moves within the room the crop leaves (none when it covers the image).
    room = (1.0 - area.sqrt()).clamp(min=0) * size / 2.0
    crop_shift = (torch.rand(batch, 2, device=device) * 2 - 1) * room[:, None]
    angle = _uniform(-view.rotation, view.rotation, batch, device) * math.pi / 180.0
    shear = torch.tan(_uniform(-view.shear, view.shear, batch, device) * math.pi / 180.0)
    shift = (torch.rand(batch, 2, device=device) * 2 - 1) * view.translate * size

    cos, sin = torch.cos(angle), torch.sin(angle)
    # Linear part: zoom * rotation * shear_x.
    linear = torch.stack([torch.stack([cos, cos * shear - sin], -1), torch.stack([sin, sin * shear + cos], -1)], -2)
    linear = linear * zoom[:, None, None]
    matrices = torch.zeros(batch, 3, 3, device=device)
    matrices[:, :2, :2] = linear
    # p_view = L (p - c - crop_shift) + c + shift
    origin = torch.full((batch, 2), centre, device=device) + crop_shift
    matrices[:, :2, 2] = -(linear @ origin[:, :, None]).squeeze(-1) + centre + shift
    matrices[:, 2, 2] = 1.0
    return matrices


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device`` without a sync: staged in pinned memory for CUDA, so the copy is
    queued on the stream like a kernel (unchanged on the CPU)."""
    if device.type == "cpu":
        return tensor
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


@dataclass(frozen=True)
class ViewDraw:
    """One view's random parameters for a batch: the affine (B, 3, 3) on the images' device, and
    kornia's colour-jitter parameters (None without jitter)."""

    matrices: torch.Tensor
    color: dict[str, torch.Tensor] | None


class BatchAugmenter:
    """Applies a view augmentation to a batch of images in [0, 1] and their keypoints."""

    def __init__(self, view: ViewAugmentation, size: int) -> None:
        self.view = view
        self.size = size
        jitter = view.color_jitter
        self.color = K.ColorJitter(jitter, jitter, jitter, 0.0, p=1.0) if jitter > 0 else None

    def __call__(
        self, images: torch.Tensor, keypoints: torch.Tensor | None = None, visible: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns (views, matrices, keypoints in the views, visibility inside the views).

        The random parameters are drawn on the host from the CPU generator, as kornia draws the
        colour jitter's, and reach an accelerator in one copy that does not wait for its queued
        work: the step never stops to sample, and a seed gives the same views on every device.
        """
        draw = self.draw(images)
        return self.finish(warp_images(images, draw.matrices, self.size), draw, keypoints, visible)

    def draw(self, images: torch.Tensor) -> ViewDraw:
        """This view's random parameters for ``images``, in the order ``__call__`` draws them."""
        matrices = _to_device(sample_affine_matrices(images.shape[0], self.size, self.view, "cpu"), images.device)
        if self.color is None:
            return ViewDraw(matrices, None)
        # Drawn for the warped views' shape, as the jitter applied to them would draw it.
        shape = torch.Size([images.shape[0], images.shape[1], self.size, self.size])
        return ViewDraw(matrices, self.color.forward_parameters(shape))

    def finish(
        self,
        warped: torch.Tensor,
        draw: ViewDraw,
        keypoints: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``__call__``'s result from the images already warped by ``draw.matrices``."""
        views = self.color(warped, params=draw.color) if self.color is not None else warped
        if keypoints is None:
            return views, draw.matrices, None, None
        moved = transform_keypoints(keypoints, draw.matrices)
        inside = ((moved >= 0) & (moved <= self.size - 1)).all(-1)
        return views, draw.matrices, moved, visible & inside


def augment_together(
    parts: list[tuple[BatchAugmenter, torch.Tensor, torch.Tensor | None, torch.Tensor | None]],
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
    """Each (augmenter, images, keypoints, visible) as its own ``augmenter(images, keypoints, visible)``
    gives it, with one warp over every part's images: the parameters are drawn part by part in the
    order of the list (the same random numbers as the calls one after another), the resampling is
    one ``grid_sample`` over the stacked batch, the colour jitter stays per part (kornia applies its
    transforms in one random order per call)."""
    sizes = {augmenter.size for augmenter, *_ in parts}
    if len(sizes) != 1:
        raise ValueError(f"views warped together need one output size, not {sorted(sizes)}")
    size = sizes.pop()
    draws = [augmenter.draw(images) for augmenter, images, *_ in parts]
    if len({images.dtype for _, images, *_ in parts}) == 1:
        warped = warp_images(
            torch.cat([images for _, images, *_ in parts]), torch.cat([d.matrices for d in draws]), size
        )
        chunks = warped.split([images.shape[0] for _, images, *_ in parts])
    else:  # stacking would promote a part to another precision, and so change its numbers
        chunks = [warp_images(images, draw.matrices, size) for (_, images, *_), draw in zip(parts, draws, strict=True)]
    return [
        augmenter.finish(chunk, draw, keypoints, visible)
        for (augmenter, _, keypoints, visible), draw, chunk in zip(parts, draws, chunks, strict=True)
    ]

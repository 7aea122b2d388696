"""The batched augmentation draws its parameters on the host and never reads a device value, and on
the CPU it gives exactly the views it gave before the parameters moved to the host."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from posealign.augmentation import BatchAugmenter, ViewAugmentation, sample_affine_matrices
from posealign.warps import transform_keypoints, warp_images

# Operations that copy a device value to the host, so the host waits for the device's queue.
DEVICE_READS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.is_nonzero.default"}


def augment_as_before(augmenter: BatchAugmenter, images, keypoints, visible):
    """BatchAugmenter.__call__ as it was (parameters drawn on the images' device), kept as the reference."""
    matrices = sample_affine_matrices(images.shape[0], augmenter.size, augmenter.view, images.device)
    views = augmenter.color(warp_images(images, matrices, augmenter.size))
    moved = transform_keypoints(keypoints, matrices)
    inside = ((moved >= 0) & (moved <= augmenter.size - 1)).all(-1)
    return views, matrices, moved, visible & inside


def inputs(device: str = "cpu", size: int = 48):
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(5, 3, size, size, generator=generator)
    keypoints = torch.rand(5, 16, 2, generator=generator) * (size + 10) - 5  # some outside the image
    visible = torch.rand(5, 16, generator=generator) > 0.2
    return images.to(device), keypoints.to(device), visible.to(device)


def test_cpu_views_are_those_of_the_previous_implementation():
    augmenter = BatchAugmenter(ViewAugmentation(), 48)
    images, keypoints, visible = inputs()
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        expected = augment_as_before(augmenter, images, keypoints, visible)
        torch.manual_seed(seed)
        got = augmenter(images, keypoints, visible)
        for name, a, b in zip(("views", "matrices", "keypoints", "visible"), got, expected, strict=True):
            assert torch.equal(a, b), f"{name} differ at seed {seed}"


class DeviceReads(TorchDispatchMode):
    """Records every operation that reads a value of a non-CPU tensor back to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        flat, _ = tree_flatten((args, kwargs))
        on_device = any(isinstance(a, torch.Tensor) and a.device.type != "cpu" for a in flat)
        if on_device and str(func) in DEVICE_READS:
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


def test_augmenting_on_a_device_reads_no_device_value_and_draws_on_the_host():
    # The meta device stands in for a GPU: any read of its values would be a host-device sync (and
    # fails outright on meta), and random numbers drawn on it would not come from the CPU generator.
    augmenter = BatchAugmenter(ViewAugmentation(), 48)
    torch.manual_seed(0)
    augmenter(*inputs("cpu"))
    cpu_state = torch.get_rng_state()

    torch.manual_seed(0)
    with DeviceReads() as reads:
        views, matrices, moved, visible = augmenter(*inputs("meta"))
    assert reads.reads == []
    assert views.device.type == matrices.device.type == moved.device.type == visible.device.type == "meta"
    assert torch.equal(torch.get_rng_state(), cpu_state), "the device call drew other random numbers than the CPU one"

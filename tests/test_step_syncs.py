"""The per-step helpers on a device never wait for it: the batched augmentation draws its parameters
on the host, the heatmap targets and inverse warps make nothing from host lists; and on the CPU each
gives exactly what it gave before."""

from __future__ import annotations

import torch
from kornia.geometry.transform import warp_affine
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


def test_heatmap_targets_and_inverse_warps_make_nothing_from_host_lists(monkeypatch):
    # torch.tensor(list, device=gpu) and linalg.inv's singularity check both wait for the GPU; the
    # dispatcher does not show the first, so the calls themselves are watched.
    from posealign.heatmaps import render_gaussian_heatmaps
    from posealign.warps import inverse_warp_heatmaps

    calls = []
    make_tensor, invert = torch.tensor, torch.linalg.inv

    def watched_tensor(*args, **kwargs):
        if kwargs.get("device") is not None and torch.device(kwargs["device"]).type != "cpu":
            calls.append("torch.tensor on the device")
        return make_tensor(*args, **kwargs)

    def watched_inv(*args, **kwargs):
        calls.append("torch.linalg.inv")
        return invert(*args, **kwargs)

    monkeypatch.setattr(torch, "tensor", watched_tensor)
    monkeypatch.setattr(torch.linalg, "inv", watched_inv)
    images, keypoints, visible = inputs("meta", size=64)
    _, matrices, moved, visible = BatchAugmenter(ViewAugmentation(), 64)(images, keypoints, visible)
    with DeviceReads() as reads:
        heatmaps, weights = render_gaussian_heatmaps(moved, visible, 16, 2.0, 4.0)
        common, valid = inverse_warp_heatmaps(heatmaps, matrices, 4.0)
    assert calls == [] and reads.reads == []
    assert common.shape == (5, 16, 16, 16) and valid.shape == (5, 1, 16, 16)


def test_heatmap_targets_and_inverse_warps_are_unchanged_on_the_cpu():
    from posealign.heatmaps import _gaussian_maps, render_gaussian_heatmaps
    from posealign.warps import inverse_warp_heatmaps

    torch.manual_seed(3)
    _, matrices, moved, visible = BatchAugmenter(ViewAugmentation(), 64)(*inputs(size=64))
    heatmaps, weights = render_gaussian_heatmaps(moved, visible, 16, 2.0, 4.0)
    # The previous formulas, with the divisor and scale made from host lists and inv's checked inverse.
    centres = moved / torch.tensor([4.0, 4.0])
    inside = ((centres >= -0.5) & (centres < 15.5)).all(-1)
    expected_weights = (visible & inside).float()
    assert torch.equal(weights, expected_weights)
    assert torch.equal(heatmaps, _gaussian_maps(centres, 16, 16, 2.0) * expected_weights[..., None, None])
    scale = torch.tensor([0.25, 0.25, 1.0])
    expected_inverse = torch.linalg.inv(scale.view(1, 3, 1) * matrices / scale.view(1, 1, 3))
    common, valid = inverse_warp_heatmaps(heatmaps, matrices, 4.0)
    expected = warp_affine(
        torch.cat([heatmaps, torch.ones(5, 1, 16, 16)], 1), expected_inverse[:, :2], (16, 16), align_corners=True
    )
    assert torch.equal(common, expected[:, :-1]) and torch.equal(valid, expected[:, -1:] > 0.999)

"""The per-step helpers on a device never wait for it: the batched augmentation draws its parameters
on the host, the heatmap targets and inverse warps make nothing from host lists, and a whole
adaptation step reads the device once, to check its losses; and on the CPU each
gives what its formula says, worked out here by hand (the point each matrix sends a pixel or keypoint
to, the Gaussian at each pixel), not with the functions under test."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from posealign.augmentation import BatchAugmenter, ViewAugmentation

# Operations that copy a device value to the host, so the host waits for the device's queue.
DEVICE_READS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.is_nonzero.default"}


def by_hand_affine(matrices: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(B, N, 2) points through (B, 3, 3) matrices: (M [x, y, 1]^T) without the last row."""
    return matrices[:, None, :2, :2].matmul(points[..., None]).squeeze(-1) + matrices[:, None, :2, 2]


def pixel_grid(size: int) -> torch.Tensor:
    """(size*size, 2) x, y of every pixel centre, row by row."""
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    return torch.stack([xs.flatten(), ys.flatten()], -1)


def ramp(points: torch.Tensor) -> torch.Tensor:
    """A linear image per channel, c0 + c1 x + c2 y: bilinear sampling reproduces it exactly."""
    coefficients = torch.tensor([[0.1, 0.010, 0.003], [0.2, -0.002, 0.012], [0.7, -0.005, -0.004]], dtype=points.dtype)
    return coefficients[:, 0] + points[..., :1] * coefficients[:, 1] + points[..., 1:] * coefficients[:, 2]


def inputs(device: str = "cpu", size: int = 48):
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(5, 3, size, size, generator=generator)
    keypoints = torch.rand(5, 16, 2, generator=generator) * (size + 10) - 5  # some outside the image
    visible = torch.rand(5, 16, generator=generator) > 0.2
    return images.to(device), keypoints.to(device), visible.to(device)


def test_cpu_views_and_keypoints_are_where_each_matrix_sends_them():
    size = 48
    augmenter = BatchAugmenter(ViewAugmentation(color_jitter=0.0), size)  # geometry only
    _, keypoints, visible = inputs(size=size)
    grid = pixel_grid(size)
    images = ramp(grid).T.reshape(1, 3, size, size).float().expand(5, -1, -1, -1).contiguous()
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        views, matrices, moved, visible_in_view = augmenter(images, keypoints, visible)
        m = matrices.double()
        expected_moved = by_hand_affine(m, keypoints.double())
        torch.testing.assert_close(moved.double(), expected_moved, rtol=0, atol=1e-4)
        inside = ((expected_moved >= 0) & (expected_moved <= size - 1)).all(-1)
        assert torch.equal(visible_in_view, visible & inside)
        assert not inside.all() and inside.any()  # both cases are exercised
        # View pixel p shows the image at M^-1 p; on the linear ramp that value is exact wherever
        # M^-1 p is at least a pixel inside the image (the zero padding reaches one pixel in).
        source = by_hand_affine(torch.linalg.inv(m), grid.expand(5, -1, -1))
        interior = ((source >= 1) & (source <= size - 2)).all(-1)
        expected = ramp(source).permute(0, 2, 1).reshape(5, 3, size, size)
        got = views.double()
        mask = interior.reshape(5, 1, size, size).expand(-1, 3, -1, -1)
        assert mask.float().mean() > 0.3
        torch.testing.assert_close(got[mask], expected[mask], rtol=0, atol=1e-4)
        outside = ((source < -1) | (source > size)).any(-1).reshape(5, 1, size, size).expand(-1, 3, -1, -1)
        assert (got[outside] == 0).all()  # nothing comes from outside the image


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


def test_heatmap_targets_and_inverse_warps_follow_their_formulas_on_the_cpu():
    from posealign.heatmaps import render_gaussian_heatmaps
    from posealign.warps import inverse_warp_heatmaps

    torch.manual_seed(3)
    _, matrices, moved, visible = BatchAugmenter(ViewAugmentation(), 64)(*inputs(size=64))
    heatmaps, weights = render_gaussian_heatmaps(moved, visible, 16, 2.0, 4.0)
    # Each map by hand: exp(-((x - x0)^2 + (y - y0)^2) / (2 sigma^2)) at every pixel, centre = keypoint / 4,
    # an all-zero map and weight 0 for a keypoint invisible or centred outside [-0.5, 15.5).
    for b in range(5):
        for k in range(16):
            x0, y0 = (moved[b, k].double() / 4).tolist()
            used = bool(visible[b, k]) and -0.5 <= x0 < 15.5 and -0.5 <= y0 < 15.5
            assert weights[b, k] == float(used)
            expected = torch.zeros(16, 16, dtype=torch.float64)
            if used:
                for y in range(16):
                    for x in range(16):
                        expected[y, x] = math.exp(-((x - x0) ** 2 + (y - y0) ** 2) / 8.0)
            torch.testing.assert_close(heatmaps[b, k].double(), expected, rtol=0, atol=1e-6)
    assert 0 < weights.sum() < weights.numel()

    # The inverse warp: common-frame pixel p takes the view map's value at D M D^-1 p (D = diag(1/4)),
    # valid where that point lies in the view; on a linear map the value is exact.
    grid = pixel_grid(16)
    view_maps = ramp(grid).T.reshape(1, 3, 16, 16).float().expand(5, -1, -1, -1).contiguous()
    scale = torch.diag(torch.tensor([0.25, 0.25, 1.0], dtype=torch.float64))
    on_grid = scale @ matrices.double() @ torch.linalg.inv(scale)
    target = by_hand_affine(on_grid, grid.expand(5, -1, -1))
    common, valid = inverse_warp_heatmaps(view_maps, matrices, 4.0)
    inside = ((target >= 0) & (target <= 15)).all(-1).reshape(5, 1, 16, 16)
    clear = ((target >= 0.01) & (target <= 14.99)).all(-1) | ((target < -0.01) | (target > 15.01)).any(-1)
    clear = clear.reshape(5, 1, 16, 16)  # away from the view's edge by more than float error
    assert torch.equal(valid[clear], inside[clear]) and inside.any() and not inside.all()
    expected = ramp(target).permute(0, 2, 1).reshape(5, 3, 16, 16)
    mask = inside.expand(-1, 3, -1, -1) & clear.expand(-1, 3, -1, -1)
    torch.testing.assert_close(common.double()[mask], expected[mask], rtol=0, atol=1e-4)


class AnsweredDeviceReads(DeviceReads):
    """DeviceReads that answers each read with a stand-in (a meta tensor has no value to give), so
    the step runs on to the end and every read in it is counted."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        flat, _ = tree_flatten((args, kwargs))
        if str(func) in DEVICE_READS and any(isinstance(a, torch.Tensor) and a.device.type != "cpu" for a in flat):
            self.reads.append(str(func))
            return True if str(func) != "aten.nonzero.default" else torch.zeros(0, 1, dtype=torch.long, device="meta")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("preset", ["daml", "daml_release", "fast"])
def test_a_whole_adaptation_step_reads_the_device_only_to_check_the_losses(preset, monkeypatch):
    """Stylization, the views, the teacher, warps, gate, occlusion, every loss, backward, Adam and
    the EMA queue their work and never wait for it, so the step can be captured as a CUDA graph; its
    one read is the check that stops a run before a non-finite loss reaches the networks."""
    from posealign.config import load_config
    from posealign.data.batch import Batch
    from posealign.multilevel_alignment import MultiLevelAlignment

    overrides = ["data.image_size=32", "data.heatmap_size=32", "model.deconv_channels=16", "train.batch_size=2"]
    overrides.append("align.feature.channels=[16,16,16]")
    method = MultiLevelAlignment(load_config(preset, "benchmark", overrides), 16).to("meta")
    method.set_train_mode()
    optimizers = [torch.optim.Adam(method.student.parameters())]
    if method.discriminator is not None:
        optimizers.append(torch.optim.Adam(method.discriminator.parameters()))

    def batch(seed: int) -> Batch:
        images, keypoints, visible = inputs("meta", size=32)
        return Batch(images[:2], keypoints[:2], visible[:2], indices=torch.arange(2) + 10 * seed)

    def step() -> list[str]:
        with AnsweredDeviceReads() as reads:
            method.forward_backward(batch(1), batch(2), "adapt", 0.5, step=1)
            for optimizer in optimizers:
                optimizer.step()
            method.update_teacher()
        return reads.reads

    assert step() == ["aten._local_scalar_dense.default"]
    monkeypatch.setattr(method, "_check_finite", lambda losses, step: None)
    assert step() == []

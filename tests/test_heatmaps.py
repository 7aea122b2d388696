import math

import torch

from posealign.heatmaps import crop_to_image, decode_heatmaps, gaussian_at_argmax, render_gaussian_heatmaps
from posealign.losses import joints_mse_loss


def test_render_peak_value_and_spread():
    # input (8, 12) px at stride 4 -> heatmap (2, 3): column 2, row 3
    heatmaps, weights = render_gaussian_heatmaps(
        torch.tensor([[[8.0, 12.0]]]), torch.tensor([[True]]), heatmap_size=8, sigma=1.0, stride=4.0
    )
    assert heatmaps.shape == (1, 1, 8, 8) and weights.tolist() == [[1.0]]
    assert heatmaps[0, 0, 3, 2] == 1.0
    assert math.isclose(heatmaps[0, 0, 3, 3].item(), math.exp(-0.5), rel_tol=1e-6)
    assert math.isclose(heatmaps[0, 0, 5, 4].item(), math.exp(-4.0), rel_tol=1e-6)  # dx=2, dy=2


def test_render_subpixel_centre_is_not_rounded():
    heatmaps, _ = render_gaussian_heatmaps(torch.tensor([[[2.5, 3.0]]]), torch.tensor([[True]]), 8, 1.0, 1.0)
    left, right = heatmaps[0, 0, 3, 2].item(), heatmaps[0, 0, 3, 3].item()
    assert math.isclose(left, math.exp(-0.125), rel_tol=1e-6) and math.isclose(right, left, rel_tol=1e-6)


def test_render_invisible_and_outside_get_zero_map_and_weight():
    kps = torch.tensor([[[4.0, 4.0], [-0.75, 4.0], [7.5, 4.0], [-0.5, 7.49], [4.0, 4.0]]])
    vis = torch.tensor([[True, True, True, True, False]])
    heatmaps, weights = render_gaussian_heatmaps(kps, vis, heatmap_size=(8, 8), sigma=2.0, stride=(1.0, 1.0))
    assert weights.tolist() == [[1.0, 0.0, 0.0, 1.0, 0.0]]  # x=7.5 = W - 0.5 is outside, -0.5 inside
    assert heatmaps[0, [1, 2, 4]].abs().sum() == 0
    assert heatmaps[0, 3].max() > 0


def test_render_decode_round_trip_subpixel():
    offsets = torch.linspace(-0.45, 0.45, 7)
    grid = torch.stack(torch.meshgrid(offsets, offsets, indexing="xy"), dim=-1).reshape(1, -1, 2)
    heat = grid + torch.tensor([20.0, 30.0])  # heatmap coordinates
    heatmaps, _ = render_gaussian_heatmaps(heat * 4, torch.ones(heat.shape[:2], dtype=torch.bool), 64, 2.0, 4.0)
    coords, confidence = decode_heatmaps(heatmaps, stride=4.0)
    assert coords.shape == (1, 49, 2) and confidence.shape == (1, 49)
    assert ((coords / 4 - heat).abs() <= 0.25 + 1e-5).all()  # within 0.3 heatmap px per axis
    plain, _ = decode_heatmaps(heatmaps, stride=4.0, refine=False)
    assert (coords / 4 - heat).abs().mean() < (plain / 4 - heat).abs().mean()


def test_quarter_offset_direction_and_border():
    hm = torch.zeros(1, 2, 8, 8)
    hm[0, 0, 4, 3] = 1.0  # peak at x=3, y=4
    hm[0, 0, 4, 4], hm[0, 0, 4, 2] = 0.6, 0.2  # right higher -> +0.25 in x
    hm[0, 0, 3, 3], hm[0, 0, 5, 3] = 0.7, 0.1  # upper (y-1) higher -> -0.25 in y
    hm[0, 1, 0, 0], hm[0, 1, 0, 1], hm[0, 1, 1, 0] = 1.0, 0.5, 0.5  # corner: no neighbour pair, no shift
    coords, confidence = decode_heatmaps(hm, stride=2.0)
    assert coords[0, 0].tolist() == [3.25 * 2, 3.75 * 2]
    assert coords[0, 1].tolist() == [0.0, 0.0]
    assert confidence.tolist() == [[1.0, 1.0]]


def test_gaussian_at_argmax():
    hm = torch.rand(2, 3, 8, 8) * 0.5
    hm[1, 2, 2, 5] = 3.0
    out = gaussian_at_argmax(hm, sigma=1.0)
    assert out.shape == hm.shape
    assert out[1, 2, 2, 5] == 1.0 and math.isclose(out[1, 2, 2, 6].item(), math.exp(-0.5), rel_tol=1e-6)
    assert (out.flatten(-2).max(-1).values == 1.0).all()


def test_crop_to_image():
    coords = torch.tensor([[[128.0, 64.0], [0.0, 0.0]]])
    boxes = torch.tensor([[100.0, 50.0, 200.0, 200.0]])
    out = crop_to_image(coords, boxes, input_size=256)
    assert out.tolist() == [[[200.0, 100.0], [100.0, 50.0]]]


def test_joints_mse_loss_hand_computed():
    pred = torch.zeros(1, 2, 2, 2)
    pred[0, 0, 0, 0] = 1.0
    pred[0, 1] = 0.5
    target = torch.zeros_like(pred)
    # squared errors: k0 -> 1, k1 -> 4 * 0.25 = 1; mean over 8 elements, times 0.5
    assert math.isclose(joints_mse_loss(pred, target, torch.ones(1, 2)).item(), 0.5 * 2 / 8)
    assert math.isclose(joints_mse_loss(pred, target, torch.tensor([[1.0, 0.0]])).item(), 0.5 * 1 / 8)
    assert math.isclose(joints_mse_loss(pred, target, torch.tensor([[[2.0], [0.0]]])).item(), 0.5 * 4 / 8)
    assert math.isclose(joints_mse_loss(pred, target).item(), 0.5 * 2 / 8)

"""The method's behaviour (METHOD.md): EMA teacher, gradient reversal, inverse warps, occlusion,
gating, pseudo-labels, the IM and consistency losses, and one whole training step per preset.

Each test checks what a formula promises on hand-made inputs, not how the code computes it.
"""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posealign.alignment.feature_level import DomainDiscriminator, ReversalCap, grl_coefficient, reverse_gradient
from posealign.augmentation import BatchAugmenter, ViewAugmentation, sample_affine_matrices
from posealign.config import load_config
from posealign.data.batch import Batch
from posealign.diagnostics import shared_parameters
from posealign.heatmaps import render_gaussian_heatmaps
from posealign.losses.adversarial import adversarial_loss
from posealign.losses.consistency import consistency_loss
from posealign.losses.information_maximization import information_maximization_loss
from posealign.mean_teacher import confidence_gate, ema_update, make_teacher, occlude_keypoints, teacher_pseudo_labels
from posealign.multilevel_alignment import MultiLevelAlignment, NonFiniteLossError, to_floats
from posealign.warps import inverse_warp_heatmaps, transform_keypoints, warp_images

torch.set_num_threads(1)


def _argmax_xy(heatmaps: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> (..., 2) integer argmax as x, y (float)."""
    width = heatmaps.shape[-1]
    index = heatmaps.flatten(-2).argmax(-1)
    return torch.stack([index % width, index // width], -1).float()


# -- mean teacher: EMA (eq. 9) ------------------------------------------------------------------


def _tiny_bn_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def _teacher_and_trained_student() -> tuple[nn.Module, nn.Module]:
    """A teacher and a student whose parameters and BatchNorm buffers all differ."""
    torch.manual_seed(0)
    student = _tiny_bn_net()
    teacher = make_teacher(student)
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(torch.randn_like(parameter))
    student.train()
    for _ in range(3):  # running stats and num_batches_tracked move on the student only
        student(torch.randn(4, 3, 5, 5) * 3 + 1)
    return teacher, student


def test_make_teacher_is_a_frozen_independent_copy():
    student = _tiny_bn_net()
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    with torch.no_grad():
        next(student.parameters()).add_(1.0)
    assert not torch.equal(next(student.parameters()), next(teacher.parameters()))


@pytest.mark.parametrize("bn_mode", ["train_teacher", "copy", "average"])
def test_ema_update_parameters_and_batchnorm_buffers(bn_mode):
    teacher, student = _teacher_and_trained_student()
    momentum = 0.9
    old_params = [p.clone() for p in teacher.parameters()]
    old_buffers = {name: b.clone() for name, b in teacher.named_buffers()}
    ema_update(teacher, student, momentum, bn_mode)

    for old, new, source in zip(old_params, teacher.parameters(), student.parameters(), strict=True):
        torch.testing.assert_close(new, momentum * old + (1 - momentum) * source, rtol=1e-6, atol=1e-6)
        assert not new.requires_grad

    student_buffers = dict(student.named_buffers())
    bn = "1."  # the BatchNorm2d's prefix in _tiny_bn_net
    assert int(student_buffers[bn + "num_batches_tracked"]) == 3
    for name, new in teacher.named_buffers():
        old, source = old_buffers[name], student_buffers[name]
        assert not torch.equal(old, source), name  # the modes are told apart on every buffer
        if bn_mode == "train_teacher":
            assert torch.equal(new, old), name
        elif bn_mode == "copy" or name.endswith("num_batches_tracked"):
            assert torch.equal(new, source), name
        else:
            torch.testing.assert_close(new, momentum * old + (1 - momentum) * source)
        assert new.dtype == old.dtype


def test_ema_update_rejects_unknown_bn_mode():
    teacher, student = _teacher_and_trained_student()
    with pytest.raises(ValueError, match="bn_mode"):
        ema_update(teacher, student, 0.9, "frozen")


# -- feature level: gradient reversal and the adversarial loss (eq. 4-5) ------------------------


@pytest.mark.parametrize("coefficient", [1.0, 0.3])
def test_reverse_gradient_is_identity_forward_and_negated_backward(coefficient):
    x = torch.randn(2, 3, 4, requires_grad=True)
    y = reverse_gradient(x, coefficient)
    assert torch.equal(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, -coefficient))


def test_grl_coefficient_schedules():
    assert grl_coefficient("dann", 0.0) == 0.0
    ramp = [grl_coefficient("dann", p) for p in (0.0, 0.1, 0.3, 0.6, 1.0)]
    assert all(a < b for a, b in zip(ramp, ramp[1:], strict=False))
    assert 0.999 < ramp[-1] <= 1.0
    assert grl_coefficient("dann", 1.0, base=0.5) == pytest.approx(0.5 * ramp[-1])
    assert grl_coefficient("constant", 0.7, base=0.25) == 0.25
    with pytest.raises(ValueError):
        grl_coefficient("linear", 0.5)


def test_adversarial_loss_trains_discriminator_and_fools_it_through_reversal():
    torch.manual_seed(0)
    discriminator = DomainDiscriminator(4, (8, 8, 8)).double()
    source = (torch.randn(2, 4, 6, 6, dtype=torch.float64) + 1.0).requires_grad_()
    target = (torch.randn(2, 4, 6, 6, dtype=torch.float64) - 1.0).requires_grad_()
    loss, logits = adversarial_loss(discriminator, source, target, coefficient=1.0)
    assert logits.shape == (4, 1, 6, 6) and not logits.requires_grad
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in discriminator.parameters())

    def bce(disc: nn.Module, fs: torch.Tensor, ft: torch.Tensor) -> float:
        with torch.no_grad():
            ls, lt = disc(fs), disc(ft)
            return (
                F.binary_cross_entropy_with_logits(ls, torch.zeros_like(ls))
                + F.binary_cross_entropy_with_logits(lt, torch.ones_like(lt))
            ).item()

    before = bce(discriminator, source, target)
    assert loss.item() == pytest.approx(before, rel=1e-9)  # domain label 0 = source, 1 = target
    # A small SGD step on the discriminator lowers its BCE ...
    stepped = copy.deepcopy(discriminator)
    with torch.no_grad():
        for p, q in zip(stepped.parameters(), discriminator.parameters(), strict=True):
            p.sub_(1e-2 * q.grad)
    assert bce(stepped, source, target) < before - 1e-6
    # ... while a small descent step on the features (gradient reversed) raises it, by about
    # the first-order amount |grad| * step length.
    norm = torch.cat([source.grad.flatten(), target.grad.flatten()]).norm()
    length = 0.1
    raised = bce(discriminator, source - length / norm * source.grad, target - length / norm * target.grad)
    assert raised - before > 0.5 * length * norm.item() > 0

    # The reversed gradient scales with the coefficient.
    source_grad = source.grad.clone()
    source.grad = None
    adversarial_loss(discriminator, source, target, coefficient=0.5)[0].backward()
    torch.testing.assert_close(source.grad, 0.5 * source_grad)


# -- warps: A and A^-1 --------------------------------------------------------------------------


def _common_keypoints(batch: int, keypoints: int, size: int, margin: float) -> torch.Tensor:
    centre = (size - 1) / 2
    return centre + (torch.rand(batch, keypoints, 2) * 2 - 1) * margin


def test_transform_keypoints_inverse_matrix_round_trip():
    torch.manual_seed(0)
    matrices = sample_affine_matrices(8, 64, ViewAugmentation(), "cpu")
    keypoints = torch.rand(8, 5, 2) * 63
    moved = transform_keypoints(keypoints, matrices)
    assert not torch.allclose(moved, keypoints)
    back = transform_keypoints(moved, torch.linalg.inv(matrices))
    torch.testing.assert_close(back, keypoints, atol=1e-4, rtol=0)


def test_warped_images_and_keypoints_agree():
    """A blob drawn at a keypoint lands where transform_keypoints sends the keypoint."""
    torch.manual_seed(1)
    size = 64
    keypoints = _common_keypoints(6, 1, size, margin=8)
    blob, _ = render_gaussian_heatmaps(keypoints, torch.ones(6, 1, dtype=torch.bool), size, 2.0, 1)
    images = blob.expand(6, 3, size, size).contiguous()
    augmenter = BatchAugmenter(ViewAugmentation(color_jitter=0.0), size)
    views, matrices, moved, visible = augmenter(images, keypoints, torch.ones(6, 1, dtype=torch.bool))
    assert visible.all()
    torch.testing.assert_close(moved, transform_keypoints(keypoints, matrices))
    torch.testing.assert_close(views, warp_images(images, matrices, size))
    assert ((_argmax_xy(views[:, 0]) - moved[:, 0]).abs() <= 1.0).all()


@pytest.mark.parametrize(("image_size", "heatmap_size"), [(64, 64), (64, 16)])
def test_inverse_warp_of_perfect_predictions_recovers_common_frame_keypoints(image_size, heatmap_size):
    torch.manual_seed(2)
    batch, num_keypoints, sigma = 8, 4, 1.5
    stride = image_size / heatmap_size
    keypoints = _common_keypoints(batch, num_keypoints, image_size, margin=12)
    visible = torch.ones(batch, num_keypoints, dtype=torch.bool)
    common, _ = render_gaussian_heatmaps(keypoints, visible, heatmap_size, sigma, stride)
    matrices = sample_affine_matrices(batch, image_size, ViewAugmentation(), "cpu")
    in_view = transform_keypoints(keypoints, matrices)
    # What a perfect network predicts on each view.
    predicted, weights = render_gaussian_heatmaps(in_view, visible, heatmap_size, sigma, stride)
    inside = ((in_view >= 2 * stride) & (in_view <= image_size - 1 - 2 * stride)).all(-1)
    assert inside.float().mean() > 0.8  # the test looks at most keypoints

    back, valid = inverse_warp_heatmaps(predicted, matrices, stride)
    assert back.shape == common.shape and valid.shape == (batch, 1, heatmap_size, heatmap_size)
    found = _argmax_xy(back)
    error = (found - _argmax_xy(common)).abs().amax(-1)
    assert (error[inside] <= 1.0).all(), error
    assert ((found - keypoints / stride).abs().amax(-1)[inside] <= 1.0).all()
    # The peak survives the warp and lies where the view saw.
    x, y = found[..., 0].long(), found[..., 1].long()
    rows = torch.arange(batch)[:, None].expand(batch, num_keypoints)
    assert valid[rows, 0, y, x][inside].all()
    assert (back.amax(dim=(2, 3))[inside] > 0.7).all()


@pytest.mark.parametrize("stride", [1, 4])
def test_validity_mask_of_a_pure_translation(stride):
    size = 8  # heatmap side
    tx, ty = 3, -2  # heatmap pixels: view = common + (tx, ty)
    matrices = torch.eye(3).unsqueeze(0).clone()
    matrices[0, 0, 2], matrices[0, 1, 2] = tx * stride, ty * stride  # the matrix is in input pixels
    heatmaps = torch.rand(1, 2, size, size)
    back, valid = inverse_warp_heatmaps(heatmaps, matrices, stride)
    expected = torch.zeros(size, size, dtype=torch.bool)
    for y in range(size):
        for x in range(size):
            expected[y, x] = 0 <= x + tx <= size - 1 and 0 <= y + ty <= size - 1
    assert torch.equal(valid[0, 0], expected)
    # Valid pixels read the view at common + t; invalid ones are zero.
    ys, xs = expected.nonzero(as_tuple=True)
    torch.testing.assert_close(back[0][:, ys, xs], heatmaps[0][:, ys + ty, xs + tx], atol=1e-5, rtol=0)
    assert (back[0][:, ~expected].abs() < 1e-6).all()


# -- occlusion O ----------------------------------------------------------------------------------


def _coded_images(batch: int, size: int) -> torch.Tensor:
    """Every pixel of every channel holds a distinct value: its position can be read back."""
    codes = torch.arange(3 * size * size, dtype=torch.float32).view(1, 3, size, size)
    return codes.repeat(batch, 1, 1, 1) + 1000.0 * torch.arange(batch).view(batch, 1, 1, 1)


def test_occlusion_picks_only_confident_keypoints_at_random():
    torch.manual_seed(4)
    batch, size = 200, 16
    images = torch.rand(batch, 3, size, size)
    keypoints = torch.full((batch, 3, 2), 8.0)
    peaks = torch.tensor([1.0, 0.2, 0.95]).repeat(batch, 1)
    _, chosen = occlude_keypoints(images, keypoints, peaks, probability=1.0, min_peak=0.9, half_size=1)
    assert set(chosen.tolist()) == {0, 2}


def test_occlusion_leaves_images_alone_without_confident_keypoints_or_probability():
    torch.manual_seed(5)
    images = torch.rand(8, 3, 16, 16)
    keypoints = torch.full((8, 2, 2), 8.0)
    low = torch.full((8, 2), 0.5)
    out, chosen = occlude_keypoints(images, keypoints, low, probability=1.0, min_peak=0.9, half_size=2)
    assert torch.equal(out, images) and (chosen == -1).all()
    high = torch.ones(8, 2)
    out, chosen = occlude_keypoints(images, keypoints, high, probability=0.0, min_peak=0.9, half_size=2)
    assert torch.equal(out, images) and (chosen == -1).all()


def test_occlusion_probability_is_the_fraction_of_occluded_images():
    torch.manual_seed(6)
    batch, size = 2000, 12
    images = _coded_images(batch, size)
    keypoints = torch.full((batch, 1, 2), 6.0)
    peaks = torch.ones(batch, 1)
    out, chosen = occlude_keypoints(images, keypoints, peaks, probability=0.3, min_peak=0.9, half_size=1)
    applied = chosen >= 0
    # Binomial(2000, 0.3): standard deviation ~0.01.
    assert abs(applied.float().mean().item() - 0.3) < 0.04
    assert torch.equal(out[~applied], images[~applied])
    changed = (out != images).flatten(1).any(1)
    assert not (changed & ~applied).any()
    assert changed[applied].float().mean() > 0.9  # only a zero source offset leaves an image as it was


# -- confidence gate --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 2), (4, 4), (2, 3)])
def test_quantile_gate_selects_exactly_the_top_half(shape):
    torch.manual_seed(7)
    count = shape[0] * shape[1]
    peaks = (torch.randperm(count).float() / count).view(shape)  # distinct
    gate = confidence_gate(peaks, "quantile", quantile=0.5)
    assert gate.shape == peaks.shape and gate.dtype == torch.bool
    assert int(gate.sum()) == count // 2
    assert peaks[gate].min() > peaks[~gate].max()


def test_random_gate_threshold_is_uniform_in_its_range():
    torch.manual_seed(8)
    # A uniform grid of peaks whose largest is 1: the selected fraction is 1 - threshold.
    peaks = torch.linspace(0.0, 1.0, 1001).view(7, 143)
    fractions = torch.tensor(
        [confidence_gate(peaks, "random", random_range=(0.3, 0.7)).float().mean().item() for _ in range(400)]
    )
    assert fractions.min() >= 0.3 - 2e-3 and fractions.max() <= 0.7 + 2e-3
    # U(0.3, 0.7): mean 0.5 (sd of the mean of 400 draws ~0.006), quartiles 0.4 and 0.6.
    assert abs(fractions.mean().item() - 0.5) < 0.025
    assert abs(fractions.quantile(0.25).item() - 0.4) < 0.04
    assert abs(fractions.quantile(0.75).item() - 0.6) < 0.04
    # Drawn each call, not fixed.
    assert fractions.unique().numel() > 50


def test_random_gate_keeps_keypoints_above_the_threshold():
    torch.manual_seed(9)
    peaks = torch.tensor([[0.1, 0.2, 0.95], [0.8, 0.29, 0.71]])
    for _ in range(20):
        gate = confidence_gate(peaks, "random", random_range=(0.3, 0.7))
        assert gate[0, 2] and gate[1, 0] and gate[1, 2]
        assert not gate[0, 0] and not gate[0, 1] and not gate[1, 1]


# -- teacher pseudo-labels N(T(.)) -------------------------------------------------------------------


def test_normalized_pseudo_labels_have_unit_peak_and_keep_the_argmax():
    torch.manual_seed(10)
    heatmaps = torch.randn(3, 4, 9, 11) * 0.3
    labels = teacher_pseudo_labels(heatmaps, "normalize", sigma=2.0)
    assert labels.shape == heatmaps.shape
    assert (labels >= 0).all()
    torch.testing.assert_close(labels.amax(dim=(2, 3)), torch.ones(3, 4))
    assert torch.equal(_argmax_xy(labels), _argmax_xy(heatmaps))


def test_unknown_pseudo_label_mode_is_rejected():
    with pytest.raises(ValueError):
        teacher_pseudo_labels(torch.rand(1, 1, 4, 4), "softmax", 2.0)


# -- pose level: information maximization (eq. 6-7) ------------------------------------------------


def _one_hot_maps(locations: list[list[tuple[int, int]]], size: int, value: float = 1.0) -> torch.Tensor:
    """locations[b][k] = (x, y) -> (B, K, size, size) maps with ``value`` there and 0 elsewhere."""
    maps = torch.zeros(len(locations), len(locations[0]), size, size)
    for b, row in enumerate(locations):
        for k, (x, y) in enumerate(row):
            maps[b, k, y, x] = value
    return maps


def test_im_paper_prefers_confident_keypoints():
    size = 3
    # Nine images whose one-hot peaks tile the grid, so the batch mean is as diverse (E_m as large)
    # as for uniform maps: only E_h + E_w differ.
    cells = [(x, y) for y in range(size) for x in range(size)]
    peaked = _one_hot_maps([[c, cells[(i + 4) % 9]] for i, c in enumerate(cells)], size, value=5.0)
    uniform = torch.full_like(peaked, 5.0)
    loss_peaked = information_maximization_loss(peaked, "paper", gate_threshold=0.5)
    loss_uniform = information_maximization_loss(uniform, "paper", gate_threshold=0.5)
    assert loss_peaked < loss_uniform - 0.1
    # Log-normalised: uniform maps have E_h = E_w = E_m = 1, so L = 1.
    assert loss_uniform.item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("variant", ["paper", "release"])
def test_im_prefers_a_diverse_batch_to_a_collapsed_one(variant):
    size = 5
    diverse = _one_hot_maps([[(0, 0), (4, 1)], [(2, 2), (1, 3)], [(4, 4), (3, 0)], [(1, 3), (0, 4)]], size, 3.0)
    collapsed = _one_hot_maps([[(2, 2), (1, 3)]] * 4, size, 3.0)
    loss_diverse = information_maximization_loss(diverse, variant, gate_threshold=0.5)
    loss_collapsed = information_maximization_loss(collapsed, variant, gate_threshold=0.5)
    assert torch.isfinite(loss_diverse) and torch.isfinite(loss_collapsed)
    assert loss_diverse < loss_collapsed


def test_im_paper_gate_ignores_unconfident_keypoints():
    torch.manual_seed(12)
    heatmaps = torch.rand(3, 2, 6, 6) * 0.2
    heatmaps[..., 2, 3] = 1.0  # every keypoint confident (batch max is 1) ...
    heatmaps[1, 1] = torch.rand(6, 6) * 0.3  # ... except image 1, keypoint 1
    loss = information_maximization_loss(heatmaps, "paper", gate_threshold=0.5)
    changed = heatmaps.clone()
    changed[1, 1] = 0.0
    changed[1, 1, 0, 5] = 0.4  # a different map, still below the gate
    torch.testing.assert_close(information_maximization_loss(changed, "paper", gate_threshold=0.5), loss)
    # A confident keypoint does count.
    changed[0, 0, 0, 0] = 0.9
    assert not torch.allclose(information_maximization_loss(changed, "paper", gate_threshold=0.5), loss)
    # The release variant has no gate.
    assert not torch.allclose(
        information_maximization_loss(heatmaps, "release"),
        information_maximization_loss(torch.where(torch.arange(2).view(1, 2, 1, 1) == 1, changed, heatmaps), "release"),
    )


def test_im_paper_is_zero_when_no_keypoint_is_confident():
    loss = information_maximization_loss(torch.rand(2, 3, 4, 4) * 0.4, "paper", gate_threshold=0.5)
    assert torch.isfinite(loss) and loss.item() == 0.0


def test_im_release_matches_a_hand_computation():
    maps = [
        [[[0.1, 0.5, 0.2], [0.0, 0.9, 0.3], [0.4, 0.1, 0.0]]],
        [[[0.7, 0.2, 0.1], [0.3, 0.0, 0.6], [0.2, 0.8, 0.5]]],
    ]  # (B=2, K=1, H=3, W=3)

    def softmax(values):
        exps = [math.exp(v) for v in values]
        return [e / sum(exps) for e in exps]

    def entropy(probabilities):
        return -sum(p * math.log(p) for p in probabilities)

    e_h = e_w = 0.0
    for image in maps:
        grid = image[0]
        row_means = [sum(row) / 3 for row in grid]  # mean over W: a function of h
        column_means = [sum(grid[h][w] for h in range(3)) / 3 for w in range(3)]
        e_h += entropy(softmax(row_means)) / 2
        e_w += entropy(softmax(column_means)) / 2
    mean_map = [(maps[0][0][h][w] + maps[1][0][h][w]) / 2 for h in range(3) for w in range(3)]
    e_m = entropy(softmax(mean_map))
    expected = (e_h + e_w - e_m) / 9
    loss = information_maximization_loss(torch.tensor(maps, dtype=torch.float64), "release")
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_im_rejects_unknown_variant():
    with pytest.raises(ValueError):
        information_maximization_loss(torch.rand(1, 1, 3, 3), "both")


# -- consistency (eq. 3) ---------------------------------------------------------------------------


def test_consistency_loss_counts_only_gated_keypoints_and_valid_pixels():
    torch.manual_seed(13)
    labels = torch.rand(2, 3, 5, 5)
    gate = torch.ones(2, 3, dtype=torch.bool)
    valid = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    assert consistency_loss(labels.clone(), labels, gate, valid).item() == 0.0

    student = torch.rand(2, 3, 5, 5)
    full = consistency_loss(student, labels, gate, valid)
    assert full > 0
    # A gated-out keypoint contributes nothing: the loss is as if the student matched it.
    gate[1, 2] = False
    matched = student.clone()
    matched[1, 2] = labels[1, 2]
    gated = consistency_loss(student, labels, gate, valid)
    torch.testing.assert_close(gated, consistency_loss(matched, labels, torch.ones_like(gate), valid))
    assert gated < full
    # Invalid pixels do not count: changing the student there leaves the loss unchanged.
    valid[0, 0, :2] = False
    base = consistency_loss(student, labels, gate, valid)
    moved = student.clone()
    moved[0, :, :2] += 10.0
    torch.testing.assert_close(consistency_loss(moved, labels, gate, valid), base)
    moved[0, :, 3] += 10.0  # a valid pixel does count
    assert consistency_loss(moved, labels, gate, valid) > base


# -- the whole step (eq. 8) --------------------------------------------------------------------------

TINY = [
    "data.image_size=32",
    "data.heatmap_size=32",
    "model.deconv_channels=16",
    "align.feature.channels=[16,16,16]",
    "train.batch_size=2",
]
NUM_KEYPOINTS = 16

# preset -> loss terms of an adaptation step
EXPECTED_TERMS = {
    "source_only": {"loss_sup"},
    "source_only_image": {"loss_sup"},
    "mean_teacher": {"loss_sup", "loss_cons"},
    "daml": {"loss_sup", "loss_cons", "loss_adv", "loss_im"},
    "daml_release": {"loss_sup", "loss_cons", "loss_adv", "loss_im"},
    "fast": {"loss_sup", "loss_cons", "loss_adv", "loss_im"},
    "mt_image_feature": {"loss_sup", "loss_cons", "loss_adv"},
    "mt_image_pose": {"loss_sup", "loss_cons", "loss_im"},
}
CASES = [(preset, stage) for preset in EXPECTED_TERMS for stage in ("adapt", "pretrain")]
CASES = [case for case in CASES if case[1] == "adapt" or not case[0].startswith("mt_image")]


def _random_batch(size: int, batch: int = 2, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return Batch(
        images=torch.rand(batch, 3, size, size, generator=generator),
        keypoints=torch.rand(batch, NUM_KEYPOINTS, 2, generator=generator) * (size - 8) + 4,
        visible=torch.ones(batch, NUM_KEYPOINTS, dtype=torch.bool),
        indices=torch.arange(batch) + 100 * seed,
    )


@functools.cache
def _built(preset: str) -> MultiLevelAlignment:
    torch.manual_seed(0)
    return MultiLevelAlignment(load_config(preset, "benchmark", TINY), NUM_KEYPOINTS)


def _method(preset: str) -> MultiLevelAlignment:
    """A fresh copy of the preset's networks (building a ResNet is the slow part, copying is not)."""
    method = copy.deepcopy(_built(preset))
    method.set_train_mode()
    return method


@pytest.mark.parametrize(("preset", "stage"), CASES)
def test_forward_backward_losses_and_gradients(preset, stage):
    method = _method(preset)
    logs = to_floats(
        method.forward_backward(_random_batch(32, seed=1), _random_batch(32, seed=2), stage, progress=0.5, step=1)
    )

    terms = EXPECTED_TERMS[preset] if stage == "adapt" else {"loss_sup"}
    assert {name for name in logs if name.startswith("loss_")} == terms
    assert all(math.isfinite(value) for value in logs.values())
    total = logs["loss_sup"]
    config = method.config
    weights = {
        "loss_cons": config.mean_teacher.consistency_weight,
        "loss_adv": config.align.feature.weight,
        "loss_im": config.align.pose.weight,
    }
    total += sum(weights[name] * logs[name] for name in terms - {"loss_sup"})
    assert logs["loss"] == pytest.approx(total, rel=1e-5, abs=1e-7)

    for name, parameter in method.student.named_parameters():
        assert parameter.grad is not None, f"student {name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), name
    assert method.student.head.weight.grad.abs().sum() > 0
    has_teacher = not preset.startswith("source_only")
    assert (method.teacher is not None) == has_teacher
    if has_teacher:
        assert all(p.grad is None for p in method.teacher.parameters())
    has_discriminator = "loss_adv" in EXPECTED_TERMS[preset]
    assert (method.discriminator is not None) == has_discriminator
    if has_discriminator:
        grads = [p.grad for p in method.discriminator.parameters()]
        if stage == "adapt":
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
        else:
            assert all(g is None for g in grads)


def test_feature_level_reaches_the_student_through_the_reversal():
    """The adversarial term changes the student's feature gradients (same draws, weight 0 vs 0.1)."""
    grads = []
    for weight in (0.0, 0.1):
        method = _method("mt_image_feature")
        method.config.align.feature.weight = weight
        torch.manual_seed(1)
        logs = method.forward_backward(_random_batch(32, seed=1), _random_batch(32, seed=2), "adapt", 0.5, step=1)
        assert logs["loss_adv"] > 0
        grads.append(method.student.deconv[0].weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_features_from_the_backbone_are_its_output():
    """``features_from="backbone"`` (what ``benchmarks/domain_gap.py`` measures beside the deconv
    features): the backbone's output on the normalised images."""
    student = MultiLevelAlignment(load_config("daml", "benchmark", TINY), NUM_KEYPOINTS).student.eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        _, features = student(images, features_from="backbone")
        torch.testing.assert_close(features, student.backbone((images - student.pixel_mean) / student.pixel_std))


def test_per_domain_forward_is_the_release_s_two_calls():
    """``domains=2`` (student_batchnorm per_domain): heatmaps, features and every BatchNorm's running
    statistics as the released code's student(x_s) then student(x_t), in one call."""
    torch.manual_seed(0)
    joined = MultiLevelAlignment(load_config("mt_image_feature", "benchmark", TINY), NUM_KEYPOINTS).student.train()
    separate = copy.deepcopy(joined)
    source, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    heatmaps, features = joined(torch.cat([source, target]), domains=2)
    parts = [separate(source), separate(target)]
    torch.testing.assert_close(heatmaps, torch.cat([parts[0][0], parts[1][0]]))
    torch.testing.assert_close(features, torch.cat([parts[0][1], parts[1][1]]))
    for (name, mine), theirs in zip(joined.state_dict().items(), separate.state_dict().values(), strict=True):
        torch.testing.assert_close(mine, theirs, msg=name)


def test_reversal_cap_scales_the_students_adversarial_gradient_and_not_the_discriminators():
    """``align.feature.reversal_cap``, the same draws each run: the student's gradient is that of
    l_adv = 0 plus factor x the adversarial part, factor = min(1, r / (|adv| / |sup|)) over the
    shared layers; the discriminator's gradient is the uncapped run's."""

    def step(adv_weight: float, consistency_weight: float, cap: float | None):
        method = _method("mt_image_feature")
        method.config.align.feature.weight = adv_weight
        method.config.mean_teacher.consistency_weight = consistency_weight
        method.reversal_cap = None if cap is None else ReversalCap(cap)
        torch.manual_seed(1)
        logs = to_floats(
            method.forward_backward(_random_batch(32, seed=1), _random_batch(32, seed=2), "adapt", 0.5, step=1)
        )
        shared = {id(p) for p in shared_parameters(method.student)}
        student = [(id(p) in shared, p.grad.clone()) for p in method.student.parameters()]
        return student, [p.grad.clone() for p in method.discriminator.parameters()], logs

    consistency = _built("mt_image_feature").config.mean_teacher.consistency_weight
    full, full_discriminator, _ = step(0.1, consistency, None)
    rest, _, _ = step(0.0, consistency, None)
    supervised, _, _ = step(0.0, 0.0, None)
    adversarial = [(is_shared, g_full - g_rest) for (is_shared, g_full), (_, g_rest) in zip(full, rest, strict=True)]

    def shared_norm(grads):
        return torch.stack([g.pow(2).sum() for is_shared, g in grads if is_shared]).sum().sqrt()

    ratio_by_hand = float(shared_norm(adversarial) / shared_norm(supervised))
    capped, capped_discriminator, logs = step(0.1, consistency, ratio_by_hand / 2)
    assert logs["reversal_ratio"] == pytest.approx(ratio_by_hand, rel=1e-3)
    assert logs["reversal_factor"] == pytest.approx(0.5, rel=1e-3)
    for (_, g_capped), (_, g_rest), (_, g_adv) in zip(capped, rest, adversarial, strict=True):
        torch.testing.assert_close(g_capped, g_rest + logs["reversal_factor"] * g_adv, rtol=1e-4, atol=1e-9)
    for mine, uncapped in zip(capped_discriminator, full_discriminator, strict=True):
        torch.testing.assert_close(mine, uncapped)
    wide, _, logs = step(0.1, consistency, 1e6)
    assert logs["reversal_factor"] == 1.0
    for (_, g_wide), (_, g_full) in zip(wide, full, strict=True):
        torch.testing.assert_close(g_wide, g_full)
    built = MultiLevelAlignment(load_config("daml_plus", "benchmark", [*TINY, "align.feature.reversal_cap=3.0"]), 4)
    assert built.reversal_cap.ratio == 3.0 and _built("daml").reversal_cap is None


@pytest.mark.parametrize(("preset", "stage"), [("source_only", "pretrain"), ("daml", "adapt")])
def test_non_finite_loss_raises_naming_the_term_and_step(preset, stage):
    method = _method(preset)
    labeled, target = _random_batch(32, seed=1), _random_batch(32, seed=2)
    labeled.images[0, :, 3:9, 3:9] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"loss_\w+ is nan at step 7"):
        method.forward_backward(labeled, target, stage, progress=0.5, step=7)

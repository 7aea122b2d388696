"""The pose level's temperature and its calibration, the reversal cap, and the diagnostics of each
level, each checked against its formula worked out by hand on small inputs."""

from __future__ import annotations

import math

import pytest
import torch
from config_paths import leaf_values
from omegaconf import OmegaConf
from torch import nn

from posealign.alignment.pose_level import axis_distributions, calibrate_temperature, confidence_entropy_fraction
from posealign.config import load_config
from posealign.config_checks import check_values
from posealign.diagnostics import discriminator_accuracies, entropy_fractions, gradient_norms, shared_parameters
from posealign.errors import UserError
from posealign.losses.information_maximization import information_maximization_loss
from posealign.models.simple_baseline import build_pose_model


def test_axis_distributions_divide_the_projections_by_the_temperature():
    # One 2x3 map: row means (1+0+2)/3 = 1 and (0+0+0)/3 = 0; column means 0.5, 0, 1.
    heatmap = torch.tensor([[[[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]]])
    p_h, p_w = axis_distributions(heatmap, temperature=0.5)
    e2 = math.exp(2.0)
    torch.testing.assert_close(p_h[0, 0], torch.tensor([e2 / (e2 + 1), 1 / (e2 + 1)]))
    weights = torch.tensor([math.exp(1.0), 1.0, math.exp(2.0)])
    torch.testing.assert_close(p_w[0, 0], weights / weights.sum())
    # tau = 1 is the paper's softmax of the projections, unchanged.
    torch.testing.assert_close(axis_distributions(heatmap)[0][0, 0], torch.softmax(torch.tensor([1.0, 0.0]), 0))


def test_im_loss_at_a_temperature_is_tau_times_the_formula_at_that_temperature():
    torch.manual_seed(0)
    maps = torch.rand(3, 2, 5, 4, dtype=torch.float64)
    tau = 0.05

    def entropy(p):
        return -(p * p.log()).sum(-1)

    # The release variant by hand: (E_h + E_w - E_m) / (H W), every softmax at tau, then times tau.
    p_h = torch.softmax(maps.mean(3) / tau, -1)
    p_w = torch.softmax(maps.mean(2) / tau, -1)
    p_m = torch.softmax(maps.mean(0).flatten(1) / tau, -1)
    by_hand = tau * (entropy(p_h).mean() + entropy(p_w).mean() - entropy(p_m).mean()) / 20
    torch.testing.assert_close(information_maximization_loss(maps, "release", temperature=tau), by_hand)
    # At tau = 1 both variants are exactly what they were.
    for variant in ("paper", "release"):
        assert torch.equal(
            information_maximization_loss(maps, variant, 0.5, 1.0), information_maximization_loss(maps, variant, 0.5)
        )


def test_the_diversity_weight_scales_e_m_only():
    torch.manual_seed(3)
    maps = torch.rand(3, 2, 5, 4, dtype=torch.float64)
    tau, threshold, beta = 0.05, 0.6, 0.25

    def entropy(p):
        return -(p * p.log()).sum(-1)

    # The paper variant by hand: gated E_h / log H + E_w / log W - beta E_m / log HW, times tau.
    gate = (maps.amax(dim=(2, 3)) > threshold).double()
    e_h = (entropy(torch.softmax(maps.mean(3) / tau, -1)) * gate).sum() / gate.sum() / math.log(5)
    e_w = (entropy(torch.softmax(maps.mean(2) / tau, -1)) * gate).sum() / gate.sum() / math.log(4)
    mean_map = (maps * gate[:, :, None, None]).sum(0) / gate.sum(0).clamp(min=1)[:, None, None]
    present = (gate.sum(0) > 0).double()
    e_m = (entropy(torch.softmax(mean_map.flatten(1) / tau, -1)) * present).sum() / present.sum() / math.log(20)
    got = information_maximization_loss(maps, "paper", threshold, tau, diversity_weight=beta)
    torch.testing.assert_close(got, tau * (e_h + e_w - beta * e_m))
    # The release variant: (E_h + E_w - beta E_m) / (H W), every keypoint.
    p_h, p_w = torch.softmax(maps.mean(3) / tau, -1), torch.softmax(maps.mean(2) / tau, -1)
    p_m = torch.softmax(maps.mean(0).flatten(1) / tau, -1)
    by_hand = tau * (entropy(p_h).mean() + entropy(p_w).mean() - beta * entropy(p_m).mean()) / 20
    torch.testing.assert_close(
        information_maximization_loss(maps, "release", temperature=tau, diversity_weight=beta), by_hand
    )
    # The default is eq. 7 as published (beta = 1): the same terms by hand, E_m at full weight.
    torch.testing.assert_close(information_maximization_loss(maps, "paper", threshold, tau), tau * (e_h + e_w - e_m))
    by_hand = tau * (entropy(p_h).mean() + entropy(p_w).mean() - entropy(p_m).mean()) / 20
    torch.testing.assert_close(information_maximization_loss(maps, "release", temperature=tau), by_hand)


def test_the_gradient_that_vanishes_at_tau_1_is_there_at_a_calibrated_tau():
    # Gaussian-like maps with peaks below 1, as a pose network predicts them.
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    centres = torch.tensor([[4.0, 5.0], [10.0, 9.0], [7.0, 12.0]])
    maps = torch.stack([0.8 * torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 8) for x, y in centres])
    maps = (maps[:, None] + 0.05 * torch.rand(3, 2, 16, 16)).requires_grad_()
    gradient = {}
    for tau in (1.0, calibrate_temperature(maps.detach(), 0.5)):
        (grad,) = torch.autograd.grad(information_maximization_loss(maps, "release", temperature=tau), maps)
        gradient[tau] = grad.norm().item()
    at_one, calibrated = gradient[1.0], next(v for k, v in gradient.items() if k != 1.0)
    assert calibrated > 10 * at_one  # about 30x here; in the benchmark runs grad_loss_im grew about 50x


def test_calibrated_temperature_gives_the_requested_entropy_and_grows_with_it():
    torch.manual_seed(1)
    maps = torch.rand(4, 3, 8, 8) ** 4
    taus = [calibrate_temperature(maps, fraction) for fraction in (0.3, 0.5, 0.8)]
    assert taus[0] < taus[1] < taus[2]
    for fraction, tau in zip((0.3, 0.5, 0.8), taus, strict=True):
        assert confidence_entropy_fraction(maps, tau) == pytest.approx(fraction, abs=1e-4)
    with pytest.raises(ValueError, match="calibrate_temperature_to"):
        calibrate_temperature(maps, 1.0)


def test_entropy_fractions_are_one_for_flat_maps_and_near_zero_for_peaked_ones():
    flat = torch.zeros(2, 3, 4, 5)
    fractions = entropy_fractions(flat)
    for value in fractions.values():
        assert value.item() == pytest.approx(1.0)
    peaked = torch.zeros(2, 3, 4, 5)
    peaked[:, :, 1, 2] = 1.0
    sharp = entropy_fractions(peaked, temperature=0.01)
    assert sharp["im_entropy_h"] < 1e-3 and sharp["im_entropy_w"] < 1e-3 and sharp["im_entropy_m"] < 1e-3


def test_discriminator_accuracy_per_domain_by_hand():
    # Source (label 0) wants logits < 0, target (label 1) logits > 0.
    logits = torch.tensor([-1.0, 2.0, -3.0, -0.5, 0.5, 1.0, 2.0, 3.0]).view(8, 1, 1, 1)
    accuracies = discriminator_accuracies(logits, source_count=4)
    assert accuracies["discriminator_accuracy_source"].item() == pytest.approx(3 / 4)
    assert accuracies["discriminator_accuracy_target"].item() == pytest.approx(1.0)


def test_gradient_norms_match_separate_backward_passes_and_leave_grad_untouched():
    torch.manual_seed(2)
    student = build_pose_model(load_config("daml", "benchmark").model, num_keypoints=3)
    shared = shared_parameters(student)
    assert len(shared) == len(list(student.parameters())) - 2  # all but the head's weight and bias
    heatmaps, features = student(torch.rand(2, 3, 32, 32))
    terms = {"loss_sup": heatmaps.pow(2).mean(), "loss_adv": 0.5 * features.abs().mean()}
    norms = gradient_norms(terms, shared)
    assert all(p.grad is None for p in student.parameters())
    for name, term in terms.items():
        student.zero_grad(set_to_none=True)
        term.backward(retain_graph=True)
        expected = torch.sqrt(sum(p.grad.pow(2).sum() for p in shared if p.grad is not None))
        torch.testing.assert_close(norms[f"grad_{name}"], expected)
    # A loss scale (fp16) is divided out again.
    scaled = gradient_norms(terms, shared, scale=1024.0)
    torch.testing.assert_close(scaled["grad_loss_sup"], norms["grad_loss_sup"])


def test_a_term_without_a_graph_is_skipped():
    layer = nn.Linear(2, 1)
    norms = gradient_norms({"loss_sup": layer(torch.ones(1, 2)).sum(), "loss_im": torch.tensor(0.3)}, [layer.weight])
    assert set(norms) == {"grad_loss_sup"}


@pytest.mark.parametrize("value", ["1.0", "0", "-0.2", "2"])
def test_calibration_fraction_outside_zero_one_is_a_one_line_error(value):
    config = load_config("daml_plus", "benchmark", [f"align.pose.calibrate_temperature_to={value}"])
    with pytest.raises(UserError, match="calibrate_temperature_to"):
        check_values(config, check_roots=False)


def test_the_diversity_term_lowers_peaks_the_batch_shares_where_the_confidence_term_raises_them():
    # Why the pose row drops E_m: keypoints of one batch lie near each other, so the
    # batch-mean map peaks where the maps do, and raising E_m's entropy lowers that shared peak.
    torch.manual_seed(4)
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    # Four maps peak at one pixel, two elsewhere.
    centres = torch.tensor([[8.0, 8.0], [8.0, 8.0], [8.0, 8.0], [8.0, 8.0], [3.0, 12.0], [12.0, 3.0]])
    maps = torch.stack([0.8 * torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 4) for x, y in centres])[:, None]
    maps = (maps + 0.02 * torch.rand_like(maps)).requires_grad_()
    tau = calibrate_temperature(maps.detach(), 0.7)
    confidence_only = information_maximization_loss(maps, "paper", 0.5, tau, diversity_weight=0.0)
    (grad_confidence,) = torch.autograd.grad(confidence_only, maps)
    (grad_full,) = torch.autograd.grad(information_maximization_loss(maps, "paper", 0.5, tau), maps)
    grad_diversity = grad_full - grad_confidence  # the gradient of -E_m's part
    peaks = maps.detach().flatten(1).argmax(1)
    at_peaks = torch.arange(len(maps))
    # Descent (minus the gradient) raises every map at its own peak by the confidence term; E_m's
    # part lowers the shared peak (by more than the confidence term raises it) and raises the others.
    raise_confidence = -grad_confidence.flatten(1)[at_peaks, peaks]
    raise_diversity = -grad_diversity.flatten(1)[at_peaks, peaks]
    assert (raise_confidence > 0).all()
    assert (raise_diversity[:4] < -raise_confidence[:4]).all() and (raise_diversity[4:] > 0).all()


def test_a_negative_diversity_weight_is_a_one_line_error():
    config = load_config("daml_plus", "benchmark", ["align.pose.diversity_weight=-0.5"])
    with pytest.raises(UserError, match="align.pose.diversity_weight=-0.5: must be 0 or more"):
        check_values(config, check_roots=False)


@pytest.mark.parametrize(
    "preset, parent",
    [("daml_plus", "daml"), ("mt_image_pose_tau", "mt_image_pose"), ("mt_image_feature_joint", "mt_image_feature")],
)
def test_new_presets_change_only_what_they_say(preset, parent):
    # Read from the two resolved configs, not restated: every setting where the preset's run differs
    # from its parent's is one its own file names, and every setting its file names makes a difference
    # (a line the task or the parent already has, or one another layer undoes, would show here).
    from posealign.config import CONFIG_ROOT

    resolved = {
        name: leaf_values(OmegaConf.to_container(load_config(name, "benchmark"), resolve=True))
        for name in (preset, parent)
    }
    differing = {
        key
        for key in resolved[preset].keys() | resolved[parent].keys()
        if resolved[preset].get(key) != resolved[parent].get(key)
    }
    own = leaf_values(OmegaConf.to_container(OmegaConf.load(str(CONFIG_ROOT / "presets" / f"{preset}.yaml"))))
    own.pop("inherit")
    assert differing - {"preset", "run.out"} == set(own)  # run.out is runs/${method}
    assert {key: resolved[preset][key] for key in own} == own


@pytest.mark.parametrize(("ratio", "loss_scale"), [(0.1, 1.0), (50.0, 1.0), (0.1, 1024.0)])
def test_reversal_cap_scales_what_the_reversal_sends_by_hand(ratio, loss_scale):
    """theta -> f = theta * x; L_sup = sum(v f) and l_adv L_adv = l sum(w R(f)): by hand the two
    gradients at theta are x v and -lambda l x w; the cap sets factor = min(1, ratio |x v| /
    |lambda l x w|) and the step's gradient is x v - factor lambda l x w. Under an fp16 loss scale S
    both terms carry S and the factor is the same."""
    from posealign.alignment.feature_level import ReversalCap, reverse_gradient

    generator = torch.Generator().manual_seed(5)
    theta = nn.Parameter(torch.randn(12, generator=generator))
    x, v, w = (torch.randn(12, generator=generator) for _ in range(3))
    coefficient, weight = 0.7, 0.2
    cap = ReversalCap(ratio)
    features = theta * x
    loss_sup = (v * features).sum()
    weighted_adv = weight * (w * reverse_gradient(features, coefficient, cap)).sum()
    logged = cap.measure(loss_scale * loss_sup, loss_scale * weighted_adv, [theta])
    (grad,) = torch.autograd.grad(loss_sup + weighted_adv, theta)

    sup_by_hand, adv_by_hand = x * v, -coefficient * weight * x * w
    uncapped_ratio = float(adv_by_hand.norm() / sup_by_hand.norm())
    factor = min(1.0, ratio / uncapped_ratio)
    assert float(logged["reversal_ratio"]) == pytest.approx(uncapped_ratio, rel=1e-5)
    assert float(logged["reversal_factor"]) == pytest.approx(factor, rel=1e-5)
    torch.testing.assert_close(grad, sup_by_hand + factor * adv_by_hand)
    assert (factor < 1.0) == (ratio == 0.1)


@pytest.mark.parametrize("value", ["0", "-1.0", "abc"])
def test_a_reversal_cap_that_is_not_a_positive_ratio_is_a_one_line_error(value):
    config = load_config("daml_plus", "benchmark", [f"align.feature.reversal_cap={value}"])
    with pytest.raises(UserError, match="align.feature.reversal_cap"):
        check_values(config, check_roots=False)

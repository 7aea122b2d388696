"""posealign.metrics.domain_gap: the proxy A-distance of a linear probe on crop feature means."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from posealign.metrics.domain_gap import crop_feature_means, domain_gap, domain_probe


def test_the_probe_reads_chance_on_one_distribution_and_separation_on_a_shift():
    """Two samples of one distribution read near chance (accuracy about 50 %, held-out entropy at
    least about ln 2, distance about 0); a shift of 2.5 std on four of 16 features (the Bayes rule:
    99.4 %) reads near 100 %, an entropy far below ln 2 and a distance near 2."""
    generator = torch.Generator().manual_seed(0)
    source, target = torch.randn(200, 16, generator=generator), torch.randn(200, 16, generator=generator)
    alike = domain_probe(source, target)
    assert 0.4 < alike["probe_accuracy"] < 0.6 and alike["held_out_entropy"] > 0.65
    assert abs(alike["proxy_a_distance"]) < 0.4
    shifted = target.clone()
    shifted[:, :4] += 2.5
    apart = domain_probe(source, shifted)
    assert apart["probe_accuracy"] > 0.95 and apart["held_out_entropy"] < 0.2 and apart["proxy_a_distance"] > 1.8
    for probe in (alike, apart):  # d_A = 2 (1 - 2 e), e the held-out error
        assert probe["proxy_a_distance"] == pytest.approx(2 * (1 - 2 * (1 - probe["probe_accuracy"])))
    with pytest.raises(ValueError, match="4 crops per domain"):
        domain_probe(source[:3], target)


class _Crops:
    """A dataset of crops whose images are one grey level: what the network reads is known."""

    def __init__(self, level: int, count: int) -> None:
        self.level, self.count = level, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.full((3, 8, 8), self.level, dtype=torch.uint8)}


class _Network(nn.Module):
    """features = 2 x image (one channel per colour); BatchNorm, so eval mode matters."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(3)

    def forward(self, images: torch.Tensor, features_from: str = "deconv") -> tuple[torch.Tensor, torch.Tensor]:
        features = self.norm(images) * 2.0 if features_from == "deconv" else images
        return features, features


def test_crop_means_run_in_eval_mode_and_a_dataset_too_small_is_skipped():
    network = _Network().train()
    means = crop_feature_means(network, _Crops(51, 10), limit=7, batch_size=3)
    # Eval mode: BatchNorm's running statistics (mean 0, var 1) leave 51 / 255 = 0.2, times 2.
    assert means.shape == (7, 3) and torch.allclose(means, torch.full((7, 3), 0.4), atol=1e-4)
    assert network.training  # its mode restored
    gap = domain_gap(network, _Crops(51, 10), _Crops(204, 12))
    assert (
        (gap["source_crops"], gap["target_crops"]) == (10, 12)
        and gap["probe_accuracy"] == 1.0
        and gap["proxy_a_distance"] == 2.0
    )
    assert domain_gap(network, _Crops(51, 3), _Crops(204, 10)) is None

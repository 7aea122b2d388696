"""Image level of DAML (eq. 1-2): source images restyled as target images by AdaIN.

``x_s->t = g(alpha * AdaIN(f(x_s), f(x_t)) + (1 - alpha) * f(x_s))``, clamped to [0, 1], where
``AdaIN(c, s) = sigma(s) * (c - mu(c)) / sigma(c) + mu(s)`` channel-wise over H, W, ``f`` a frozen
encoder and ``g`` its decoder. Images are RGB in [0, 1], shape (B, 3, H, W).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from posealign.errors import UserError
from posealign.models.style_decoder import AdaINDecoder, load_decoder_weights
from posealign.models.style_encoders import InvertiblePatchEncoder, VGG19Relu41Encoder

StyleStatistics = tuple[torch.Tensor, torch.Tensor]  # mean, std: each (B, C, 1, 1)


def feature_statistics(features: torch.Tensor, eps: float = 1e-5) -> StyleStatistics:
    """Channel-wise mean and std over H, W: (B, C, H, W) -> two (B, C, 1, 1), in float32.

    std = sqrt(var + eps) with the population variance. The AdaIN releases use the unbiased one: a
    factor N / (N - 1) on both variances, which cancels in sigma(s) / sigma(c) for equal sizes.
    """
    flat = features.float().flatten(2)
    mean = flat.mean(dim=2)[:, :, None, None]
    std = (flat.var(dim=2, correction=0) + eps).sqrt()[:, :, None, None]
    return mean, std


def adain_with_statistics(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor, eps: float = 1e-5):
    """AdaIN with precomputed style statistics (B or 1, C, 1, 1): sigma_s * (c - mu_c) / sigma_c + mu_s."""
    content_mean, content_std = feature_statistics(content, eps)
    normalised = (content.float() - content_mean) / content_std
    return (normalised * style_std.float() + style_mean.float()).to(content.dtype)


def adain(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """AdaIN(c, s) = sigma(s) * (c - mu(c)) / sigma(c) + mu(s), channel-wise over H, W (eq. 1)."""
    return adain_with_statistics(content, *feature_statistics(style, eps), eps=eps)


class StyleTransfer(nn.Module):
    """A frozen encoder ``f`` and decoder ``g``; ``stylize`` computes eq. 2 and nothing else.

    The module stays in eval mode and without gradients whatever its parent does: it only makes
    training images for the pose network (decoder training lives in ``posealign.style_training``).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, eps: float = 1e-5):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.eps = eps
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> StyleTransfer:
        return super().train(False)

    @torch.no_grad()
    def style_statistics(self, images: torch.Tensor) -> StyleStatistics:
        """(mean, std) of f(images), each (B, C, 1, 1): cache these per target image if you like."""
        return feature_statistics(self.encoder(images), self.eps)

    @torch.no_grad()
    def stylize(
        self,
        content: torch.Tensor,
        style: torch.Tensor | None = None,
        style_stats: StyleStatistics | None = None,
        alpha: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        """x = g(alpha * AdaIN(f(content), f(style)) + (1 - alpha) * f(content)), clamped to [0, 1].

        ``content`` (B, 3, H, W); the style as images (B or 1, 3, H', W') or as ``style_stats``;
        ``alpha`` a float or a per-sample tensor (B,). Returns (B, 3, H, W).
        """
        if (style is None) == (style_stats is None):
            raise ValueError("pass exactly one of style (images) and style_stats (mean, std)")
        if style_stats is None:
            style_stats = self.style_statistics(style)
        content_features = self.encoder(content)
        stylized = adain_with_statistics(content_features, *style_stats, eps=self.eps)
        if isinstance(alpha, torch.Tensor):
            alpha = alpha.to(content_features.device, content_features.dtype).reshape(-1, 1, 1, 1)
        features = alpha * stylized + (1 - alpha) * content_features
        images = self.decoder(features)[..., : content.shape[-2], : content.shape[-1]]
        return images.clamp(0.0, 1.0).to(content.dtype)

    forward = stylize


@torch.no_grad()
def stylize_source_batch(
    transfer: StyleTransfer,
    source: torch.Tensor,
    target: torch.Tensor | StyleStatistics,
    probability: float = 0.5,
    generator: torch.Generator | None = None,
    alpha_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[torch.Tensor, bool]:
    """Stylize the source batch as the paired targets with probability ``probability``: one coin and
    one alpha ~ U(alpha_range) for the whole batch, as the released code draws them.

    ``target``: images (B, 3, H', W') or cached statistics (mean, std), each (B, C, 1, 1).
    ``generator``: a CPU generator for the coin and alpha. Returns the images (B, 3, H, W) and
    whether they were stylized.
    """
    low, high = alpha_range
    draws = torch.rand(2, generator=generator)
    if not bool(draws[0] < probability):
        return source, False
    alpha = (low + (high - low) * draws[1]).expand(source.shape[0]).to(source.device)
    style_stats = transfer.style_statistics(target) if isinstance(target, torch.Tensor) else target
    return transfer.stylize(source, style_stats=style_stats, alpha=alpha), True


_CONFIG_DEFAULTS = {
    "encoder": "patch",
    "encoder_weights": None,
    "decoder_weights": None,
    "patch_size": 4,
    "patch_basis": "dct",
    "padding_mode": "reflect",
    "allow_random_weights": False,
}


def require_style_weights(options: Mapping) -> None:
    """A vgg19 image level without both weight files would stylize with random networks: refuse,
    unless ``allow_random_weights`` says that is meant (tests, timing)."""
    if options.get("encoder", "patch") != "vgg19" or options.get("allow_random_weights"):
        return
    unset = [key for key in ("encoder_weights", "decoder_weights") if options.get(key) in (None, "", "none")]
    if unset:
        keys = " and ".join(f"align.image.{key}" for key in unset)
        raise UserError(
            f"align.image.encoder=vgg19 with {keys} unset would stylize with random networks; give the published "
            "AdaIN weights (align.image.encoder_weights=vgg_normalised.pth align.image.decoder_weights=decoder.pth, "
            "the files the released DAML code loads), or train a decoder on your two domains with "
            "`posealign style train` and pass its decoder.pt, or use align.image.encoder=patch (no weights); "
            "align.image.allow_random_weights=true only for tests and timing"
        )


def build_style_transfer(cfg: Mapping | None = None) -> StyleTransfer:
    """Build from ``{encoder: "patch"|"vgg19", encoder_weights: null|path|"imagenet",
    decoder_weights: null|path, patch_size: 4, patch_basis: "dct"|"random", padding_mode: "reflect"}``.

    "patch" needs no weights (its decoder is exact); "vgg19" needs the encoder's weights and a decoder
    trained for it (``posealign style train``): without them it refuses (:func:`require_style_weights`)
    unless ``allow_random_weights`` is true.
    """
    options = dict(_CONFIG_DEFAULTS)
    for key, value in (cfg or {}).items():
        if key not in options:
            raise UserError(f"style transfer config: unknown key {key!r}; known: {sorted(options)}")
        options[key] = value
    if options["encoder"] == "patch":
        if options["encoder_weights"] is not None or options["decoder_weights"] is not None:
            raise UserError("style transfer config: the patch encoder has no weights; remove encoder/decoder_weights")
        encoder = InvertiblePatchEncoder(int(options["patch_size"]), basis=options["patch_basis"])
        return StyleTransfer(encoder, encoder.decoder())
    if options["encoder"] == "vgg19":
        require_style_weights(options)
        encoder = VGG19Relu41Encoder(options["encoder_weights"], padding_mode=options["padding_mode"])
        decoder = AdaINDecoder(encoder.output_channels)
        if options["decoder_weights"] is not None:
            load_decoder_weights(decoder, options["decoder_weights"])
        return StyleTransfer(encoder, decoder)
    raise UserError(f"style transfer config: encoder must be 'patch' or 'vgg19', not {options['encoder']!r}")

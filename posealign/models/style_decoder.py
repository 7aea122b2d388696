"""The AdaIN decoder ``g`` (Huang & Belongie 2017): VGG-19 relu4_1 mirrored back to an image.

Reflection padding, nearest-neighbour upsampling, no normalisation layers. The module indices equal
those of the decoder in the AdaIN releases (``decoder.pth``), so released weights load strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import nn

from posealign.errors import UserError
from posealign.files import load_torch_file

# (in, out) convolutions with "U" for a 2x nearest upsampling: relu4_1 (512) -> RGB.
_DECODER_PLAN = (
    (512, 256), "U",
    (256, 256), (256, 256), (256, 256), (256, 128), "U",
    (128, 128), (128, 64), "U",
    (64, 64), (64, 3),
)  # fmt: skip


class AdaINDecoder(nn.Sequential):
    """(B, 512, h, w) relu4_1 features -> (B, 3, 8h, 8w) image (unbounded; the caller clamps)."""

    upsample = 8

    def __init__(self, in_channels: int = 512):
        layers: list[nn.Module] = []
        for item in _DECODER_PLAN:
            if item == "U":
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                continue
            channels_in = in_channels if not layers else item[0]
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels_in, item[1], 3), nn.ReLU()]
        super().__init__(*layers[:-1])  # no ReLU after the last conv


def load_decoder_weights(decoder: nn.Module, path: str | Path) -> None:
    """Load a trained decoder strictly: a bare state dict (the release's ``decoder.pth``) or a
    ``posealign style train`` file (``decoder.pt``, a dict with a "decoder" entry)."""
    state = load_torch_file(
        path,
        "decoder weights",
        "pass a decoder file",
        missing_fix="train one with `posealign style train` or fix the path",
    )
    if isinstance(state, Mapping) and isinstance(state.get("decoder"), Mapping):
        state = state["decoder"]
    try:
        decoder.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: is not an AdaIN decoder state dict ({first_line}); pass a decoder file") from None

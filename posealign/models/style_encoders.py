"""Frozen encoders ``f`` for the image level: images in [0, 1], shape (B, 3, H, W) -> features.

Two encoders, both with ``.output_channels`` and ``.downsample`` (features are H / downsample):

- ``VGG19Relu41Encoder``: VGG-19 up to relu4_1, as in AdaIN (Huang & Belongie 2017). It always has
  the layer structure of the AdaIN release's ``vgg_normalised.pth`` (a 1x1 preprocessing conv, then
  reflection-padded 3x3 convs), so that file loads strictly; torchvision VGG-19 weights load into the
  same structure with the 1x1 conv set to the ImageNet normalisation.
- ``InvertiblePatchEncoder``: pixel-unshuffle plus a fixed orthogonal mixing, with an exact analytic
  decoder. It needs no downloaded weights and no decoder training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from posealign.errors import UserError
from posealign.files import load_torch_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The Caffe VGG mean, BGR order on the 0..255 scale: what the release's first 1x1 conv subtracts.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

# VGG-19 convolutions (in, out) with "M" for max pooling, conv1_1 .. conv5_4.
_VGG19_PLAN = (
    (3, 64), (64, 64), "M",
    (64, 128), (128, 128), "M",
    (128, 256), (256, 256), (256, 256), (256, 256), "M",
    (256, 512), (512, 512), (512, 512), (512, 512), "M",
    (512, 512), (512, 512), (512, 512), (512, 512),
)  # fmt: skip
_PLAN_ITEMS_TO_RELU4_1 = 12  # conv1_1 .. conv4_1 with three poolings
_LEVEL_NAMES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def _release_layers(plan=_VGG19_PLAN, padding_mode: str = "reflect") -> list[nn.Module]:
    """The AdaIN release's ``vgg`` nn.Sequential (converted from Lua): same modules, same indices."""
    pad = nn.ReflectionPad2d if padding_mode == "reflect" else nn.ZeroPad2d
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    for item in plan:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
        else:
            layers += [pad(1), nn.Conv2d(item[0], item[1], 3), nn.ReLU()]
    return layers


def _meta_release_layers() -> list[nn.Module]:
    """The whole release net (to relu5_4) on the meta device: shapes only, no memory, no init."""
    with torch.device("meta"):
        return _release_layers()


def _conv_indices(layers: list[nn.Module]) -> list[int]:
    return [i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d)]


def _torchvision_conv_indices() -> list[int]:
    """Indices of the 3x3 convs in ``torchvision.models.vgg19().features``."""
    indices, position = [], 0
    for item in _VGG19_PLAN:
        if item == "M":
            position += 1
        else:
            indices.append(position)
            position += 2  # conv, relu
    return indices


def _expected_shapes(prefix: str, names: list[int], convs: list[nn.Module]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, conv in zip(names, convs, strict=True):
        shapes[f"{prefix}{name}.weight"] = tuple(conv.weight.shape)
        shapes[f"{prefix}{name}.bias"] = tuple(conv.bias.shape)
    return shapes


def _torchvision_classifier_shapes() -> dict[str, tuple[int, ...]]:
    return {
        "classifier.0.weight": (4096, 512 * 7 * 7),
        "classifier.0.bias": (4096,),
        "classifier.3.weight": (4096, 4096),
        "classifier.3.bias": (4096,),
        "classifier.6.weight": (1000, 4096),
        "classifier.6.bias": (1000,),
    }


def _check_exact(path: str, state: Mapping[str, torch.Tensor], expected: dict[str, tuple[int, ...]], layout: str):
    """Strict loading: the same keys and shapes, or a one-line UserError naming the file."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{name}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise UserError(f"{path}: looks like a {layout} VGG-19 state dict but does not match it ({detail})")


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    state = load_torch_file(
        path, "weights", "pass a state dict file", missing_fix="pass the path of a VGG-19 / decoder state dict"
    )
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: is not a state dict (a mapping of names to tensors); pass a state dict file")
    return dict(state)


class VGG19Relu41Encoder(nn.Module):
    """VGG-19 to relu4_1, frozen and in eval mode: (B, 3, H, W) in [0, 1] -> (B, 512, H/8, W/8).

    ``weights``: None (random init, for tests), a path to a state dict in torchvision's layout
    (``features.N.*``, ImageNet-normalised input) or in the AdaIN release's layout
    (``vgg_normalised.pth``: '0.weight' is a 1x1 conv 3->3 doing RGB [0, 1] -> BGR x 255 - mean),
    the string "imagenet" or a ``torchvision.models.VGG19_Weights`` (downloads; needs the network).
    The layout is detected from the keys. Either way the first module is a 1x1 conv that maps RGB in
    [0, 1] to what the following convs expect, and padding happens after it, so both layouts see the
    same normalised image. ``padding_mode``: "reflect" (AdaIN, default) or "zeros" (torchvision
    trained with zero padding of the normalised image).
    """

    output_channels = 512
    downsample = 8
    level_names = _LEVEL_NAMES

    def __init__(self, weights=None, padding_mode: str = "reflect"):
        super().__init__()
        if padding_mode not in ("reflect", "zeros"):
            raise ValueError(f"padding_mode must be 'reflect' or 'zeros', not {padding_mode!r}")
        self.layers = nn.Sequential(*_release_layers(_VGG19_PLAN[:_PLAN_ITEMS_TO_RELU4_1], padding_mode))
        convs = _conv_indices(list(self.layers))  # 0 is the 1x1 preprocessing conv
        # Module slices ending at relu1_1, relu2_1, relu3_1, relu4_1 (the release's enc_1 .. enc_4).
        self._level_ends = tuple(convs[i] + 2 for i in (1, 3, 5, 9))
        for index in convs[1:]:
            nn.init.kaiming_normal_(self.layers[index].weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(self.layers[index].bias)
        self._set_imagenet_preprocessing()
        self.weights_layout = "random"
        if weights is not None:
            self.load_weights(weights)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Relu41Encoder:
        return super().train(False)  # always frozen

    def _set_imagenet_preprocessing(self) -> None:
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        with torch.no_grad():
            self.layers[0].weight.copy_(torch.diag(1.0 / std)[:, :, None, None])
            self.layers[0].bias.copy_(-mean / std)

    def load_weights(self, weights) -> str:
        """Load ``weights`` (see the class docstring); returns the detected layout."""
        if weights == "imagenet" or type(weights).__name__ == "VGG19_Weights":
            import torchvision

            enum = torchvision.models.VGG19_Weights.IMAGENET1K_V1 if isinstance(weights, str) else weights
            state, path = enum.get_state_dict(progress=True), f"torchvision {enum}"
        else:
            path = str(weights)
            state = _read_state_dict(path)
        layout = self._detect_layout(path, state)
        if layout == "torchvision":
            self._load_torchvision(path, state)
        else:
            self._load_release(path, state)
        self.weights_layout = layout
        return layout

    @staticmethod
    def _detect_layout(path: str, state: Mapping[str, torch.Tensor]) -> str:
        first = state.get("features.0.weight", state.get("0.weight"))
        if first is not None and tuple(first.shape) == (64, 3, 3, 3):
            return "torchvision"
        if first is not None and tuple(first.shape) == (3, 3, 1, 1) and "2.weight" in state:
            return "release"
        raise UserError(
            f"{path}: not VGG-19 weights in torchvision's layout (features.0.weight 64x3x3x3) nor in the "
            "AdaIN release's vgg_normalised.pth layout (0.weight 3x3x1x1); pass one of those files"
        )

    def _load_torchvision(self, path: str, state: Mapping[str, torch.Tensor]) -> None:
        tv_indices = _torchvision_conv_indices()
        full = _meta_release_layers()
        convs = [full[i] for i in _conv_indices(full)[1:]]  # without the 1x1 preprocessing conv
        if "features.0.weight" in state:
            expected = _expected_shapes("features.", tv_indices, convs)
            if any(k.startswith("classifier.") for k in state):
                expected |= _torchvision_classifier_shapes()
            _check_exact(path, state, expected, "torchvision")
            state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        else:  # vgg19().features.state_dict()
            _check_exact(path, state, _expected_shapes("", tv_indices, convs), "torchvision (features only)")
        mapped = {}
        for tv_index, index in zip(tv_indices, _conv_indices(list(self.layers))[1:], strict=False):  # to conv4_1
            mapped[f"{index}.weight"] = state[f"{tv_index}.weight"]
            mapped[f"{index}.bias"] = state[f"{tv_index}.bias"]
        self._set_imagenet_preprocessing()
        mapped["0.weight"], mapped["0.bias"] = self.layers[0].weight.clone(), self.layers[0].bias.clone()
        self.layers.load_state_dict(mapped, strict=True)

    def _load_release(self, path: str, state: Mapping[str, torch.Tensor]) -> None:
        full = _meta_release_layers()
        whole = _expected_shapes("", _conv_indices(full), [full[i] for i in _conv_indices(full)])
        truncated = {k: v for k, v in whole.items() if int(k.split(".")[0]) < len(self.layers)}
        # The release ships the whole net (to relu5_4) and cuts it at module 31 after loading.
        _check_exact(path, state, whole if len(state) > len(truncated) else truncated, "AdaIN-release")
        self.layers.load_state_dict({k: v for k, v in state.items() if k in truncated}, strict=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> relu4_1 features (B, 512, ceil(H/8), ceil(W/8))."""
        return self.layers(images)

    def encode_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """relu1_1, relu2_1, relu3_1, relu4_1 features (the AdaIN style loss uses all four)."""
        levels, x, start = [], images, 0
        for end in self._level_ends:
            x = self.layers[start:end](x)
            levels.append(x)
            start = end
        return levels


def dct_matrix(size: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix (size, size): row u is the u-th cosine basis vector."""
    n = torch.arange(size, dtype=torch.float64)
    matrix = torch.cos(math.pi * (n[None, :] + 0.5) * n[:, None] / size) * math.sqrt(2.0 / size)
    matrix[0] /= math.sqrt(2.0)
    return matrix


# Orthonormal luminance / opponent-colour basis: mean of RGB, red-blue, green-magenta.
_OPPONENT_COLOUR = torch.tensor(
    [
        [1 / math.sqrt(3)] * 3,
        [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
        [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
    ],
    dtype=torch.float64,
)


def patch_mixing_matrix(patch_size: int, basis: str = "dct", seed: int = 0) -> torch.Tensor:
    """Orthogonal (3 p^2, 3 p^2) matrix applied to pixel-unshuffled channels (order: colour, row, col).

    "dct": opponent colour x 2-D DCT of the patch, so each feature channel is one colour component at
    one spatial frequency. "random": a seeded random orthogonal matrix (QR of a Gaussian).
    """
    if basis == "dct":
        dct = dct_matrix(patch_size)
        return torch.kron(_OPPONENT_COLOUR, torch.kron(dct, dct)).float()
    if basis == "random":
        size = 3 * patch_size * patch_size
        gaussian = torch.randn(size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        q, r = torch.linalg.qr(gaussian)
        return (q * torch.sign(torch.diagonal(r))).float()
    raise ValueError(f"basis must be 'dct' or 'random', not {basis!r}")


class InvertiblePatchEncoder(nn.Module):
    """Pixel-unshuffle by ``patch_size`` then a fixed orthogonal 1x1 mixing: (B, 3 p^2, H/p, W/p).

    With the default DCT basis, AdaIN in this space matches, per colour component and per spatial
    frequency inside a p x p patch, the mean and spread over the image: the DC channels carry colour
    and low-frequency contrast, the others local texture energy. ``decoder()`` is its exact inverse.
    Sides that are not a multiple of p are padded (replicate); the caller crops the decoded image.
    """

    def __init__(self, patch_size: int = 4, basis: str = "dct", seed: int = 0):
        super().__init__()
        self.patch_size = int(patch_size)
        self.output_channels = 3 * self.patch_size**2
        self.downsample = self.patch_size
        self.register_buffer("mixing", patch_mixing_matrix(self.patch_size, basis, seed))
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        pad_h, pad_w = -images.shape[-2] % p, -images.shape[-1] % p
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
        mixing = self.mixing.to(images.dtype)[:, :, None, None]
        return F.conv2d(F.pixel_unshuffle(images, p), mixing)

    def decoder(self) -> InvertiblePatchDecoder:
        return InvertiblePatchDecoder(self.mixing, self.patch_size)


class InvertiblePatchDecoder(nn.Module):
    """The exact inverse of ``InvertiblePatchEncoder``: transpose mixing, then pixel shuffle."""

    def __init__(self, mixing: torch.Tensor, patch_size: int):
        super().__init__()
        self.patch_size = int(patch_size)
        self.register_buffer("unmixing", mixing.detach().clone().T.contiguous())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        unmixing = self.unmixing.to(features.dtype)[:, :, None, None]
        return F.pixel_shuffle(F.conv2d(features, unmixing), self.patch_size)

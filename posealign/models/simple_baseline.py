"""SimpleBaseline (Xiao et al. 2018): a torchvision ResNet, three deconvolutions and a 1x1 head.

``forward`` returns the heatmaps and the deconvolution feature map; the feature level of the method
aligns that map, so the network exposes it instead of a hook reaching into its insides.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from posealign.errors import UserError
from posealign.files import load_torch_file
from posealign.models.domain_batchnorm import (
    DomainBatchNorm2d,
    deinterleave,
    interleave,
    one_pass_possible,
    per_domain_statistics,
)

_RESNETS = {
    "resnet18": (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (torchvision.models.resnet34, torchvision.models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": (torchvision.models.resnet101, torchvision.models.ResNet101_Weights.IMAGENET1K_V1),
}
# Output channels of layer1..layer4 for basic-block and bottleneck ResNets.
_STAGE_CHANNELS = {"resnet18": (64, 128, 256, 512), "resnet34": (64, 128, 256, 512)}
_BOTTLENECK_CHANNELS = (256, 512, 1024, 2048)

# Images reach the network in [0, 1]; the ImageNet normalisation lives inside the model so that
# stylization, augmentation and overlays all work on plain [0, 1] images.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_resnet_backbone(
    name: str, weights: str | None = None, stages: int = 4, norm_layer: type[nn.Module] = nn.BatchNorm2d
) -> tuple[nn.Sequential, int, int]:
    """A ResNet trunk up to ``layer{stages}``; returns (module, output channels, output stride).

    weights: None (random init), ``"imagenet"`` (torchvision's enum: downloads once, for users who
    are online) or a path to a local state dict in torchvision's ResNet layout.
    """
    if name not in _RESNETS:
        raise UserError(f"unknown backbone {name!r}; choose one of {sorted(_RESNETS)}")
    if not 1 <= stages <= 4:
        raise UserError(f"model.backbone_stages must be 1..4, got {stages}")
    constructor, imagenet = _RESNETS[name]
    resnet = constructor(weights=imagenet if weights == "imagenet" else None, norm_layer=norm_layer)
    if weights not in (None, "", "none", "imagenet"):
        load_backbone_weights(resnet, Path(weights))
    layers = [resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool]
    layers += [getattr(resnet, f"layer{i}") for i in range(1, stages + 1)]
    channels = _STAGE_CHANNELS.get(name, _BOTTLENECK_CHANNELS)[stages - 1]
    return nn.Sequential(*layers), channels, 2 ** (stages + 1)


def load_backbone_weights(resnet: nn.Module, path: Path) -> None:
    """Load a local torchvision-layout ResNet state dict (the classifier ``fc.*`` may be absent)."""
    state = load_torch_file(
        path,
        "backbone weights",
        "save them with torch.save(state_dict)",
        missing_fix="give a torchvision ResNet state dict or model.pretrained=none",
    )
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = resnet.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise UserError(
            f"{path}: not a torchvision ResNet state dict for this backbone "
            f"({len(missing)} missing keys, e.g. {missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]})"
        )


class SimpleBaseline(nn.Module):
    """ResNet -> ``deconv_layers`` x (deconv k4 s2, BN, ReLU) -> 1x1 conv to K heatmaps.

    ``head_layers`` > 1 puts (3x3 conv, BN, ReLU) x (head_layers - 1) before the 1x1 conv, in the
    layout of RegDA's ``PoseResNet2d`` head (``--num-head-layers``), so its checkpoints load.

    forward: images (B, 3, S, S) in [0, 1] -> heatmaps (B, K, S/r, S/r), features (B, C, S/r, S/r)
    with r = backbone stride / 2**deconv_layers (4 for the paper's ResNet + 3 deconvolutions).
    ``features_from="backbone"`` returns the backbone's output instead, at the backbone's stride
    (:mod:`posealign.metrics.domain_gap` measures the domain gap at either layer).
    """

    def __init__(
        self,
        num_keypoints: int,
        backbone: str = "resnet101",
        pretrained: str | None = None,
        backbone_stages: int = 4,
        deconv_layers: int = 3,
        deconv_channels: int = 256,
        head_layers: int = 1,
    ) -> None:
        super().__init__()
        # DomainBatchNorm2d: nn.BatchNorm2d's numbers and keys, plus the one-pass per-domain statistics.
        self.backbone, channels, backbone_stride = build_resnet_backbone(
            backbone, pretrained, backbone_stages, norm_layer=DomainBatchNorm2d
        )
        layers: list[nn.Module] = []
        for _ in range(deconv_layers):
            layers += [
                nn.ConvTranspose2d(channels, deconv_channels, 4, stride=2, padding=1, bias=False),
                DomainBatchNorm2d(deconv_channels),
                nn.ReLU(inplace=True),
            ]
            channels = deconv_channels
        self.deconv = nn.Sequential(*layers)
        if head_layers < 1:
            raise UserError(f"model.head_layers must be at least 1, got {head_layers}")
        head = nn.Conv2d(channels, num_keypoints, kernel_size=1)
        if head_layers == 1:
            self.head = head
        else:
            hidden = [
                (nn.Conv2d(channels, channels, 3, 1, 1), DomainBatchNorm2d(channels), nn.ReLU())
                for _ in range(head_layers - 1)
            ]
            self.head = nn.Sequential(*(m for layer in hidden for m in layer), head)
        self.feature_channels = channels
        self.stride = backbone_stride // 2**deconv_layers
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for module in self.deconv.modules():
            if isinstance(module, nn.ConvTranspose2d):
                nn.init.normal_(module.weight, std=0.001)
        for module in self.head.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.001)
                nn.init.zeros_(module.bias)
        # The one interleaved pass over both domains: True / False force it on / off (tests and
        # benchmarks compare both); None, on CUDA only: on the CPU the per-domain channel view costs
        # more than the second pass saves (docs/speed.md).
        self.one_pass_domains: bool | None = None

    def forward(
        self, images: torch.Tensor, domains: int = 1, features_from: str = "deconv"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``domains`` > 1: the batch is that many equal parts (one per domain), and BatchNorm
        normalises each domain with its own batch statistics and updates its running statistics once
        per part, in order, as the released code's ``student(x_s)`` then ``student(x_t)`` do: in one
        interleaved pass (:mod:`posealign.models.domain_batchnorm`), or one pass per part where the
        layout or the BatchNorm modules do not allow it. One call either way, so DDP sees one forward
        per backward.
        """
        if domains > 1:
            if images.shape[0] % domains:
                raise ValueError(f"a batch of {images.shape[0]} does not split into {domains} equal domain parts")
            one_pass = images.is_cuda if self.one_pass_domains is None else self.one_pass_domains
            if one_pass and self.training and one_pass_possible(self, images):
                with per_domain_statistics(self, domains):
                    heatmaps, features = self(interleave(images, domains), features_from=features_from)
                return deinterleave(heatmaps, domains), deinterleave(features, domains)
            parts = [self(part, features_from=features_from) for part in images.chunk(domains)]
            return torch.cat([h for h, _ in parts]), torch.cat([f for _, f in parts])
        backbone_features = self.backbone((images - self.pixel_mean) / self.pixel_std)
        features = self.deconv(backbone_features)
        return self.head(features), backbone_features if features_from == "backbone" else features


def build_pose_model(model_cfg, num_keypoints: int) -> SimpleBaseline:
    """The pose network from the ``model`` section of a config."""
    pretrained = model_cfg.get("pretrained")
    return SimpleBaseline(
        num_keypoints=num_keypoints,
        backbone=model_cfg.backbone,
        pretrained=None if pretrained in (None, "none", "") else str(pretrained),
        backbone_stages=int(model_cfg.get("backbone_stages", 4)),
        deconv_layers=int(model_cfg.get("deconv_layers", 3)),
        deconv_channels=int(model_cfg.get("deconv_channels", 256)),
        head_layers=int(model_cfg.get("head_layers", 1)),
    )

"""Checkpoints of the released code (DAML, UDAPE, the Transfer-Learning-Library's RegDA) as posealign models.

All three build the same PoseResNet (tllib's, copied into DAML_PoseEstimation and UDA_PoseEstimation
as ``lib/models/pose_resnet.py``): ``backbone``, a torchvision ResNet that keeps its unused ImageNet
classifier ``fc``; ``upsampling``, a Sequential of (ConvTranspose2d k4 s2 p1 without bias,
BatchNorm2d, ReLU) x 3 with 256 channels; ``head``, a 1x1 convolution with bias. posealign's
SimpleBaseline is the same network, its modules named differently, so the weights carry over by
renaming keys (``_RENAMES``) and dropping the classifier. RegDA's adapted model (``PoseResNet2d``)
has a second, adversarial head ``head_adv`` that only training uses (dropped), and its ``head`` is a
Sequential of ``--num-head-layers`` layers (3x3 conv, BN, ReLU, ..., 1x1 conv), which posealign
builds with ``model.head_layers``.

Their images reach the network normalised with the ImageNet mean and std; posealign's network takes
[0, 1] images and applies the same normalisation inside, so the heatmaps are the same.

Which weights: DAML and UDAPE save ``student`` and ``teacher`` (both ``nn.DataParallel``, hence
``module.`` prefixes); RegDA saves ``model`` (and its source pretraining ``pretrain.pth``, also
``model``). A bare state dict is accepted too.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch
from omegaconf import OmegaConf

from posealign.config import load_config, resolved
from posealign.errors import UserError
from posealign.files import load_torch_file
from posealign.keypoints import KEYPOINT_SETS
from posealign.models.simple_baseline import build_pose_model
from posealign.pose_model_files import PoseModel, Preprocessing

SOURCES = ("daml", "udape", "regda")
# The weights each release reports: the mean teacher (DAML, UDAPE), RegDA's one model.
DEFAULT_WEIGHTS = {"daml": "teacher", "udape": "teacher", "regda": "model"}

# Released key prefix -> posealign's. The backbone is an nn.Sequential in posealign
# (conv1, bn1, relu, maxpool, layer1..layer4), the deconvolutions are called ``deconv``.
_BACKBONE_RENAMES = (
    ("backbone.conv1.", "backbone.0."),
    ("backbone.bn1.", "backbone.1."),
    ("backbone.layer1.", "backbone.4."),
    ("backbone.layer2.", "backbone.5."),
    ("backbone.layer3.", "backbone.6."),
    ("backbone.layer4.", "backbone.7."),
    ("upsampling.", "deconv."),
)
_RENAMES = {
    "daml": (*_BACKBONE_RENAMES, ("head.", "head.")),
    "udape": (*_BACKBONE_RENAMES, ("head.", "head.")),
    "regda": (*_BACKBONE_RENAMES, ("head.", "head.")),
}
# Released keys with no counterpart: the ImageNet classifier the backbone keeps, RegDA's adversarial head.
_DROPPED = {
    "daml": ("backbone.fc.",),
    "udape": ("backbone.fc.",),
    "regda": ("backbone.fc.", "head_adv."),
}
# (bottleneck blocks?, blocks per stage) -> the torchvision ResNet posealign builds.
_RESNETS = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
}


def read_released_checkpoint(path: Path, source: str, which: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of ``which`` weights (default: the release's reported ones) without ``module.``."""
    # DAML and UDAPE save their argparse arguments beside the weights: a plain attribute holder.
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = load_torch_file(path, "checkpoint", f"pass a checkpoint written by the released {source} code")
    if not isinstance(state, dict):
        raise UserError(f"{path}: holds a {type(state).__name__}, not a checkpoint dict or state dict")
    if all(isinstance(v, torch.Tensor) for v in state.values()) and state:
        chosen, weights = state, which or "state_dict"
    else:
        weights = which or DEFAULT_WEIGHTS[source]
        if weights not in state and which is None and "student" in state:
            weights = "student"  # a stage-1 checkpoint of a release whose teacher comes later
        candidates = [k for k, v in state.items() if isinstance(v, dict) and any(_is_pose_key(n) for n in v)]
        if weights not in state or not isinstance(state[weights], dict):
            raise UserError(
                f"{path}: no {weights!r} weights in the checkpoint; it holds {candidates or sorted(state)}; "
                f"pass --which {candidates[0] if candidates else 'KEY'}"
            )
        chosen = state[weights]
    chosen = {re.sub(r"^module\.", "", k): v for k, v in chosen.items()}
    if not any(_is_pose_key(k) for k in chosen):
        raise UserError(
            f"{path}: the {weights!r} weights are not a PoseResNet (no backbone.*/upsampling.*/head.* keys, "
            f"e.g. {next(iter(chosen), None)!r}); pass a checkpoint of the released {source} code"
        )
    return chosen, weights


def _is_pose_key(key: str) -> bool:
    return key.removeprefix("module.").startswith(("backbone.", "upsampling.", "head."))


def released_architecture(state: dict[str, torch.Tensor], path: Path) -> tuple[dict, int]:
    """posealign's ``model`` config for the released network these weights belong to, and its
    number of keypoints; a ``UserError`` naming what posealign cannot build."""
    stages = []
    for stage in range(1, 5):
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"backbone\.layer{stage}\.(\d+)\.", k))}
        stages.append(len(blocks))
    bottleneck = "backbone.layer1.0.conv3.weight" in state
    backbone = _RESNETS.get((bottleneck, tuple(stages)))
    if backbone is None:
        kind = "bottleneck" if bottleneck else "basic"
        raise UserError(
            f"{path}: the backbone is a ResNet with {tuple(stages)} {kind} blocks per stage, which posealign does "
            f"not build; it builds resnet18 (2,2,2,2 basic), resnet34 (3,4,6,3 basic), resnet50 (3,4,6,3 "
            f"bottleneck) and resnet101 (3,4,23,3 bottleneck)"
        )
    deconvs = sorted(
        int(m.group(1))
        for k, v in state.items()
        if (m := re.fullmatch(r"upsampling\.(\d+)\.weight", k)) and v.dim() == 4
    )
    if not deconvs:
        raise UserError(f"{path}: no deconvolution weights (upsampling.N.weight); not a PoseResNet checkpoint")
    channels = {int(state[f"upsampling.{i}.weight"].shape[1]) for i in deconvs}
    kernels = {tuple(state[f"upsampling.{i}.weight"].shape[2:]) for i in deconvs}
    if kernels != {(4, 4)}:
        raise UserError(
            f"{path}: deconvolution kernels {sorted(kernels)}; posealign's deconvolutions are 4x4 "
            "(the release's default kernel_sizes=(4, 4, 4))"
        )
    if any(f"upsampling.{i}.bias" in state for i in deconvs):
        raise UserError(
            f"{path}: the deconvolutions have a bias (deconv_with_bias=True); posealign's have none (the "
            "release's default)"
        )
    if len(channels) != 1:
        raise UserError(f"{path}: deconvolutions of different widths {sorted(channels)}; posealign uses one width")
    head_convs = sorted(
        int(m.group(1)) for k, v in state.items() if (m := re.fullmatch(r"head\.(\d+)\.weight", k)) and v.dim() == 4
    )
    final = f"head.{head_convs[-1]}.weight" if head_convs else "head.weight"
    if final not in state:
        raise UserError(f"{path}: no keypoint head (head.weight); not a PoseResNet checkpoint")
    model_config = {
        "backbone": backbone,
        "pretrained": "none",
        "backbone_stages": 4,
        "deconv_layers": len(deconvs),
        "deconv_channels": channels.pop(),
        "head_layers": max(1, len(head_convs)),
    }
    return model_config, int(state[final].shape[0])


def rename_released_keys(state: dict[str, torch.Tensor], source: str, head_layers: int) -> dict[str, torch.Tensor]:
    """The released keys under posealign's names, without the keys posealign has no module for."""
    renamed = {}
    for key, value in state.items():
        if key.startswith(_DROPPED[source]):
            continue
        for released, ours in _RENAMES[source]:
            if key.startswith(released):
                key = ours + key[len(released) :]
                break
        if head_layers == 1:
            key = re.sub(r"^head\.0\.", "head.", key)  # RegDA's one-layer head is a Sequential of one conv
        renamed[key] = value
    return renamed


def import_released_checkpoint(
    path: str | Path, source: str, task: str, which: str | None = None, image_size: int | None = None
) -> PoseModel:
    """A released checkpoint as a posealign ``PoseModel`` whose run config is ``task``'s (its keypoint
    set, image size and labeled splits, for ``eval``) with the released network's architecture."""
    path = Path(path)
    if source not in SOURCES:
        raise UserError(f"--from {source!r}: choose one of {', '.join(SOURCES)}")
    state, weights = read_released_checkpoint(path, source, which)
    model_config, num_keypoints = released_architecture(state, path)
    overrides = [f"model.{k}={v}" for k, v in model_config.items()]
    if image_size is not None:
        overrides.append(f"data.image_size={image_size}")
    config = load_config("source_only", task, overrides)
    keypoint_set = KEYPOINT_SETS.get(str(config.data.keypoint_set))
    if keypoint_set is None:
        raise UserError(
            f"task {task!r}: its keypoint set {config.data.keypoint_set!r} is not built in; pass a task of the "
            f"checkpoint's keypoint set ({', '.join(sorted(KEYPOINT_SETS))})"
        )
    if keypoint_set.num_keypoints != num_keypoints:
        raise UserError(
            f"{path}: the checkpoint's head predicts {num_keypoints} keypoints but task {task!r} uses "
            f"{keypoint_set.name!r} with {keypoint_set.num_keypoints}; pass the task the checkpoint was trained for"
        )
    network = build_pose_model(OmegaConf.create(model_config), num_keypoints)
    mismatch = network.load_state_dict(rename_released_keys(state, source, model_config["head_layers"]), strict=False)
    if mismatch.missing_keys or mismatch.unexpected_keys:
        raise UserError(
            f"{path}: the {weights!r} weights do not fit the {source} PoseResNet posealign rebuilds "
            f"({len(mismatch.missing_keys)} missing, e.g. {mismatch.missing_keys[:1]}; "
            f"{len(mismatch.unexpected_keys)} unexpected, e.g. {mismatch.unexpected_keys[:1]})"
        )
    config.method = f"{source}_release"
    network_stride = network.stride
    size = int(config.data.image_size)
    config.data.heatmap_size = size // network_stride  # the released network's output, whatever the task says
    return PoseModel(
        network=network.eval(),
        keypoint_set=keypoint_set,
        preprocessing=Preprocessing(size, size // network_stride, float(config.data.sigma)),
        model_config=model_config,
        origin={
            "checkpoint": str(path),
            "imported_from": source,
            "weights": weights,
            "method": config.method,
            "task": task,
        },
        training_config=OmegaConf.to_container(resolved(config)),
    )

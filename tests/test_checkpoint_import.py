"""``posealign import``: a checkpoint of the released DAML, UDAPE or RegDA code gives the released
network's heatmaps in posealign, and ``predict``, ``export`` and ``train.init`` take the file.

The released network is re-created here module for module (tllib's PoseResNet, copied by DAML and
UDAPE as lib/models/pose_resnet.py; RegDA's PoseResNet2d from tllib/alignment/regda.py), so its
state dict has the released key layout; the checkpoints are saved as the released training scripts
save them (``nn.DataParallel`` wrappers, optimiser and scheduler states, the argparse arguments).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.models.resnet import BasicBlock

from posealign.cli import main
from posealign.pose_model_files import load_pose_model

IMAGE_SIZE = 64
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


# ----------------------------------------------------------------------------- the released modules


class ReleasedResNet(torchvision.models.ResNet):
    """lib/models/resnet.py: torchvision's ResNet, its classifier kept but not run."""

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class Upsampling(nn.Sequential):
    """(ConvTranspose2d, BatchNorm2d, ReLU) per hidden dim; kernel 4 -> padding 1, 3 -> output_padding 1."""

    def __init__(self, in_channel, hidden_dims=(256, 256, 256), kernel_sizes=(4, 4, 4), bias=False):
        layers = []
        for hidden_dim, kernel_size in zip(hidden_dims, kernel_sizes, strict=True):
            padding, output_padding = {4: (1, 0), 3: (1, 1), 2: (0, 0)}[kernel_size]
            layers += [
                nn.ConvTranspose2d(in_channel, hidden_dim, kernel_size, 2, padding, output_padding, bias=bias),
                nn.BatchNorm2d(hidden_dim),
                nn.ReLU(inplace=True),
            ]
            in_channel = hidden_dim
        super().__init__(*layers)


class PoseResNet(nn.Module):
    """DAML / UDAPE / tllib: backbone -> upsampling -> 1x1 head (DAML also returns the features)."""

    def __init__(self, backbone, upsampling, feature_dim, num_keypoints):
        super().__init__()
        self.backbone = backbone
        self.upsampling = upsampling
        self.head = nn.Conv2d(feature_dim, num_keypoints, kernel_size=1, stride=1, padding=0)

    def forward(self, x):
        return self.head(self.upsampling(self.backbone(x)))


class PoseResNet2d(nn.Module):
    """RegDA: one backbone and upsampling, a main and an adversarial head of ``num_head_layers``."""

    def __init__(self, backbone, upsampling, feature_dim, num_keypoints, num_head_layers=2):
        super().__init__()
        self.backbone = backbone
        self.upsampling = upsampling
        self.head = self._make_head(num_head_layers, feature_dim, num_keypoints)
        self.head_adv = self._make_head(num_head_layers, feature_dim, num_keypoints)

    @staticmethod
    def _make_head(num_layers, channel_dim, num_keypoints):
        layers = []
        for _ in range(num_layers - 1):
            layers += [nn.Conv2d(channel_dim, channel_dim, 3, 1, 1), nn.BatchNorm2d(channel_dim), nn.ReLU()]
        layers.append(nn.Conv2d(channel_dim, num_keypoints, kernel_size=1, stride=1, padding=0))
        return nn.Sequential(*layers)

    def forward(self, x):
        return self.head(self.upsampling(self.backbone(x)))  # eval mode: the main head only


def released_network(
    kind: str = "pose_resnet",
    num_keypoints: int = 16,
    blocks=(2, 2, 2, 2),
    hidden: int = 64,
    deconvs: int = 3,
    kernel: int = 4,
    bias: bool = False,
    head_layers: int = 2,
    seed: int = 0,
) -> nn.Module:
    """A released network (ResNet-18 backbone) with every weight and BatchNorm statistic random."""
    torch.manual_seed(seed)
    backbone = ReleasedResNet(BasicBlock, list(blocks))
    upsampling = Upsampling(512, (hidden,) * deconvs, (kernel,) * deconvs, bias)
    if kind == "pose_resnet2d":
        network = PoseResNet2d(backbone, upsampling, hidden, num_keypoints, head_layers)
    else:
        network = PoseResNet(backbone, upsampling, hidden, num_keypoints)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.0)
                module.bias.uniform_(-0.1, 0.1)
            elif isinstance(module, nn.ConvTranspose2d | nn.Conv2d) and module.bias is not None:
                module.bias.uniform_(-0.1, 0.1)
    return network.eval()


def released_heatmaps(network: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The released evaluation: ImageNet-normalised images (T.Normalize in their transforms)."""
    with torch.no_grad():
        return network((images - MEAN) / STD)


def save_release_checkpoint(source: str, folder: Path, **architecture) -> tuple[Path, dict[str, nn.Module]]:
    """A checkpoint as the released training script writes it; returns it and its networks by key."""
    args = argparse.Namespace(arch="pose_resnet18", lr=0.001, lr_step=[45, 60], batch_size=32, resume=None)
    if source in ("daml", "udape"):
        student = released_network(seed=1, **architecture)
        teacher = released_network(seed=2, **architecture)
        optimizer = torch.optim.SGD(student.parameters(), lr=0.001, momentum=0.9, nesterov=True)
        checkpoint = {
            "student": nn.DataParallel(student).state_dict(),  # the scripts wrap both: module.* keys
            "teacher": nn.DataParallel(teacher).state_dict(),
            "stu_optimizer": optimizer.state_dict(),
            "lr_scheduler": torch.optim.lr_scheduler.MultiStepLR(optimizer, [45, 60], 0.1).state_dict(),
            "epoch": 3,
            "args": args,
        }
        networks = {"student": student, "teacher": teacher}
    elif source == "regda":
        model = released_network("pose_resnet2d", seed=3, **architecture)
        checkpoint = {"model": model.state_dict(), "epoch": 3, "args": args}
        networks = {"model": model}
    else:  # RegDA's source pretraining (``pretrain.pth``): the plain PoseResNet under ``model``
        model = released_network(seed=4, **architecture)
        checkpoint = {"model": model.state_dict()}
        networks = {"model": model}
    path = folder / f"{source}.pth"
    torch.save(checkpoint, path)
    return path, networks


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, tuple[Path, dict[str, nn.Module]]]:
    """One checkpoint in each released format, and its networks."""
    folder = tmp_path_factory.mktemp("releases")
    return {source: save_release_checkpoint(source, folder) for source in ("daml", "udape", "regda", "regda_pretrain")}


@pytest.mark.parametrize("source", ["daml", "udape", "regda", "regda_pretrain"])
def test_imported_checkpoint_gives_the_released_heatmaps(source, releases, tmp_path):
    checkpoint, networks = releases[source]
    images = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    # DAML's both weights (a wrong pick shows); UDAPE's file has the same layout
    which_options = {"daml": ["student", "teacher"], "udape": ["teacher"]}.get(source, ["model"])
    heatmaps = {}
    for which in which_options:
        out = tmp_path / f"{which}.safetensors"
        name = "regda" if source == "regda_pretrain" else source
        args = ["import", str(checkpoint), "--from", name, "--task", "surreal2lsp", "--out", str(out), "--which", which]
        assert main([*args, "--image-size", str(IMAGE_SIZE)]) == 0
        model = load_pose_model(out)
        with torch.no_grad():
            heatmaps[which] = model.network(images)[0]
        expected = released_heatmaps(networks[which], images)
        assert heatmaps[which].shape == expected.shape == (2, 16, IMAGE_SIZE // 4, IMAGE_SIZE // 4)
        assert expected.abs().max() > 0.01  # heatmaps worth comparing
        assert (heatmaps[which] - expected).abs().max() <= 1e-5
        assert model.keypoint_set.name == "body16" and model.origin["imported_from"] == name
    if source == "daml":  # --which picked different weights
        assert (heatmaps["student"] - heatmaps["teacher"]).abs().max() > 1e-3


def test_import_defaults_to_the_teacher_and_predict_and_export_take_the_file(releases, tmp_path):
    checkpoint, networks = releases["daml"]
    out = tmp_path / "daml.safetensors"
    assert main(["import", str(checkpoint), "--from", "daml", "--task", "surreal2lsp", "--out", str(out)]) == 0
    model = load_pose_model(out)
    assert model.origin["weights"] == "teacher" and model.preprocessing.image_size == 256
    images = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        assert (model.network(images)[0] - released_heatmaps(networks["teacher"], images)).abs().max() <= 1e-5
    assert model.training_config["data"]["eval"]["target"]["dataset"] == "lsp"  # eval's labeled splits
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 40, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    predictions = tmp_path / "predictions"
    assert main(["predict", str(tmp_path / "a.png"), "--checkpoint", str(out), "--out", str(predictions)]) == 0
    assert len(json.loads((predictions / "predictions.json").read_text())[0]["keypoints"]) == 16 * 3
    again = tmp_path / "again.safetensors"
    assert main(["export", str(out), "--out", str(again)]) == 0
    assert load_pose_model(again).fingerprint() == model.fingerprint()


def test_training_starts_from_an_imported_checkpoint(tmp_path, capsys):
    checkpoint, _ = save_release_checkpoint("regda_pretrain", tmp_path, hidden=32)
    imported = tmp_path / "regda.safetensors"
    command = ["import", str(checkpoint), "--from", "regda", "--task", "benchmark", "--out", str(imported)]
    assert main(command) == 0
    run = tmp_path / "run"
    train = [
        "train", "--preset", "source_only", "--task", "benchmark", "--out", str(run),
        "run.tensorboard=false", "run.progress=false", "train.batch_size=2",
        "data.benchmark_sizes={source_train: 4, source_test: 2, target_train: 4, target_test: 2, target_val: 2}",
        f"train.init={imported}", "data.heatmap_size=16", "optim.lr=1e-12", "train.pretrain_steps=1",
        "data.eval.source=null", "data.eval.target_val=null",
    ]  # fmt: skip
    assert main(train) == 2  # the benchmark's backbone stops at layer2; the released one runs all four
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "model.backbone_stages=4" in error and str(imported) in error
    assert main([*train, "model.backbone_stages=4"]) == 0
    trained = load_pose_model(run)
    start = load_pose_model(imported)
    # An Adam step moves each weight by about lr: every weight stays where train.init put it
    # (BatchNorm statistics do move).
    start_parameters = dict(start.network.named_parameters())
    for name, parameter in trained.network.named_parameters():
        assert (parameter - start_parameters[name]).abs().max() < 1e-9, name
    # eval reads the labeled splits from the task the import was given (the benchmark the run generated)
    evaluate = ["eval", str(imported), "--split", "target", f"data.eval.target.root={tmp_path / 'benchmark'}"]
    assert main(evaluate) == 0
    assert "PCK@0.05" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("architecture", "message"),
    [
        ({"blocks": (1, 1, 1, 1)}, "(1, 1, 1, 1) basic blocks per stage"),
        ({"bias": True}, "the deconvolutions have a bias"),
        ({"kernel": 3}, "deconvolution kernels [(3, 3)]"),
        ({"num_keypoints": 21}, "predicts 21 keypoints but task 'surreal2lsp' uses 'body16' with 16"),
    ],
)
def test_a_network_posealign_cannot_rebuild_is_one_line_naming_the_difference(architecture, message, tmp_path, capsys):
    checkpoint, _ = save_release_checkpoint("regda_pretrain", tmp_path, **architecture)
    out = tmp_path / "model.safetensors"
    assert main(["import", str(checkpoint), "--from", "regda", "--task", "surreal2lsp", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error and str(checkpoint) in error
    assert not out.exists()


def test_missing_weights_name_what_the_checkpoint_holds(releases, tmp_path, capsys):
    checkpoint, _ = releases["regda"]
    out = tmp_path / "model.safetensors"
    command = ["import", str(checkpoint), "--from", "daml", "--task", "surreal2lsp", "--out", str(out)]
    assert main([*command, "--which", "teacher"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "no 'teacher' weights" in error and "--which model" in error

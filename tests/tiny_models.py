"""An untrained pose network small enough to run in milliseconds, written as ``posealign export`` writes
one, for the tests of ``predict`` that need a model file but not a trained one."""

from __future__ import annotations

from pathlib import Path

import torch

from posealign.keypoints import BODY16
from posealign.models.simple_baseline import build_pose_model
from posealign.pose_model_files import PoseModel, Preprocessing, write_exported_model

TINY_MODEL = {
    "backbone": "resnet18",
    "pretrained": "none",
    "backbone_stages": 2,
    "deconv_layers": 1,
    "deconv_channels": 16,
}


def write_tiny_model(path: Path, seed: int = 0) -> Path:
    """A random-weight body16 SimpleBaseline (64 x 64 crops, 16 x 16 heatmaps) exported to ``path``."""
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    network = build_pose_model(OmegaConf.create(TINY_MODEL), BODY16.num_keypoints).eval()
    model = PoseModel(
        network=network,
        keypoint_set=BODY16,
        preprocessing=Preprocessing(image_size=64, heatmap_size=16, sigma=2.0),
        model_config=dict(TINY_MODEL),
        origin={"test": "random weights"},
    )
    write_exported_model(model, path)
    return path

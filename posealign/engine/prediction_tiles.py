"""The first crops of a dataset with a model's predicted poses drawn on them: TensorBoard's
``predictions/target`` images during training and the rows of the report's prediction grid.

Always the same crops (the first ``count``), so images from different steps or runs compare.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from posealign.data.pose_dataset import CroppedPoseDataset
from posealign.engine.data import collate
from posealign.inference import run_on_crops
from posealign.keypoints import KeypointSet
from posealign.skeleton_drawing import draw_pose


def prediction_tiles(
    model: nn.Module,
    dataset: CroppedPoseDataset,
    keypoint_set: KeypointSet,
    device: torch.device | str,
    count: int = 8,
    min_side: int = 192,
) -> list[Image.Image]:
    """The first ``count`` crops, enlarged to at least ``min_side`` pixels, each with its predicted pose."""
    items = collate([dataset[i] for i in range(min(count, len(dataset)))])
    _, coords, confidence = run_on_crops(model, items["image"], device)
    crops = items["image"].permute(0, 2, 3, 1).numpy()
    scale = max(1.0, min_side / crops.shape[1])
    return [
        draw_pose(crop, keypoints, scores, keypoint_set, scale=scale)
        for crop, keypoints, scores in zip(crops, coords.numpy(), confidence.numpy(), strict=True)
    ]


def log_prediction_images(writer, model, dataset, keypoint_set, step: int, device, count: int = 8) -> None:
    tiles = prediction_tiles(model, dataset, keypoint_set, device, count)
    writer.add_images("predictions/target", np.stack([np.asarray(t) for t in tiles]), step, dataformats="NHWC")

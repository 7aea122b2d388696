"""Prediction images for TensorBoard: the same fixed target images every time, with the pose."""

from __future__ import annotations

import numpy as np
import torch

from posealign.engine.data import collate
from posealign.heatmaps import decode_heatmaps
from posealign.visualization import draw_pose


@torch.no_grad()
def predict_crops(model, dataset, indices: list[int], device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops (N, S, S, 3) uint8, predicted keypoints (N, K, 2) in crop pixels and confidences (N, K)."""
    was_training = model.training
    model.eval()
    items = collate([dataset[i] for i in indices])
    heatmaps, _ = model(items["image"].to(device).float().div(255.0))
    model.train(was_training)
    coords, confidence = decode_heatmaps(heatmaps.float().cpu(), dataset.image_size / heatmaps.shape[-1])
    return items["image"].permute(0, 2, 3, 1).numpy(), coords.numpy(), confidence.numpy()


def log_prediction_images(writer, model, dataset, keypoint_set, step: int, device, count: int = 8) -> None:
    indices = list(range(min(count, len(dataset))))
    crops, coords, confidence = predict_crops(model, dataset, indices, device)
    scale = max(1.0, 192 / crops.shape[1])
    tiles = [
        np.asarray(draw_pose(c, k, s, keypoint_set, scale=scale))
        for c, k, s in zip(crops, coords, confidence, strict=True)
    ]
    writer.add_images("predictions/target", np.stack(tiles), step, dataformats="NHWC")

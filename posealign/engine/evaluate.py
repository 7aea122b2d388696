"""Evaluation: legacy PCK@0.05 on the heatmap grid (the papers' number) and bbox-normalised PCK in
original image pixels (mmpose's), per keypoint and per group, with curves over thresholds."""

from __future__ import annotations

import torch
from torch import nn

from posealign.data.pose_dataset import CroppedPoseDataset
from posealign.engine.data import collate
from posealign.heatmaps import crop_to_image
from posealign.inference import run_on_crops
from posealign.keypoints import KeypointSet
from posealign.metrics.pck import PCKAccumulator, legacy_target_locations


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: CroppedPoseDataset,
    keypoint_set: KeypointSet,
    batch_size: int = 32,  # the released --test-batch: released_batch_mean depends on it
    device: torch.device | str = "cpu",
    limit: int | None = None,
) -> dict:
    """PCK of ``model`` (in eval mode; its mode is restored) on a labeled split. Percentages; ``pck`` is legacy "All"."""
    legacy = PCKAccumulator(keypoint_set, "legacy")
    by_bbox = PCKAccumulator(keypoint_set, "bbox")
    size = dataset.image_size
    total = len(dataset) if limit is None else min(limit, len(dataset))
    for start in range(0, total, batch_size):
        items = collate([dataset[i] for i in range(start, min(start + batch_size, total))])
        heatmaps, coords, _ = run_on_crops(model, items["image"], device)
        heatmap_size = heatmaps.shape[-1]
        legacy.update(
            heatmaps, legacy_target_locations(items["keypoints"], items["visible"], heatmap_size, size / heatmap_size)
        )
        records = [dataset.dataset.records[i] for i in items["index"].tolist()]
        original = torch.stack([torch.from_numpy(r.keypoints) for r in records])
        visible = torch.stack([torch.from_numpy(r.visible) for r in records])
        boxes = torch.stack([torch.from_numpy(r.bbox) for r in records])
        by_bbox.update(crop_to_image(coords, items["crop_box"], size), original, visible, boxes)
    summary = legacy.compute()
    bbox_summary = by_bbox.compute()
    return {
        "pck": summary["All"],
        "groups": summary["groups"],
        "per_keypoint": summary["per_keypoint"],
        "samples": summary["counts"]["samples"],
        "curve": legacy.curve(),
        "bbox_pck": {"pck": bbox_summary["All"], "groups": bbox_summary["groups"], "curve": by_bbox.curve()},
    }

"""Running a pose network on crops: keypoints in the crops' pixels, or in the original images'.

``run_on_crops`` is the one forward-and-decode every caller uses (evaluation, TensorBoard images,
the report, ``posealign predict``), so they all read a network's output the same way: heatmaps
decoded with ``decode_heatmaps`` at ``stride = crop side / heatmap side``.

``predict_images`` crops each object as evaluation crops it: a square of ``box_scale`` x the longest
side of its box (``load_coco``'s ``crop="bbox"``), or the whole image with its aspect kept when
there is no box (``crop="image"``); zero padding outside the image; resized to ``image_size``.
Keypoints are mapped back with ``crop_to_image``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from posealign.data.records import square_box_around
from posealign.errors import UserError
from posealign.heatmaps import crop_to_image, decode_heatmaps
from posealign.image_crops import crop_square, mirror_crop
from posealign.pose_model_files import DEFAULT_BOX_SCALE


@dataclass
class PosePrediction:
    """One object. keypoints (K, 2) x, y in original image pixels; confidence (K,) = heatmap peaks;
    box (4,) x, y, w, h of the object box (the whole image when none was given); crop_box (4,) the
    square region the network saw."""

    keypoints: np.ndarray
    confidence: np.ndarray
    box: np.ndarray
    crop_box: np.ndarray

    @property
    def score(self) -> float:
        """Object score: the mean keypoint confidence."""
        return float(np.mean(self.confidence))


@torch.no_grad()
def run_on_crops(
    model: nn.Module, crops: torch.Tensor, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model (in eval mode, its mode restored after) on crops (B, 3, S, S) uint8.

    Returns, on the CPU: heatmaps (B, K, H, W) float, keypoints (B, K, 2) in crop pixels and their
    confidence (B, K), the heatmap peaks.
    """
    was_training = model.training
    model.eval()
    heatmaps, _ = model(crops.to(device).float().div_(255.0))
    model.train(was_training)
    heatmaps = heatmaps.float().cpu()
    coords, confidence = decode_heatmaps(heatmaps, crops.shape[-1] / heatmaps.shape[-1])
    return heatmaps, coords, confidence


def object_crop_box(box: np.ndarray | list[float], scale: float = DEFAULT_BOX_SCALE) -> np.ndarray:
    """Square (x, y, side, side) around an object box (x, y, w, h): ``scale`` x its longest side."""
    x, y, w, h = (float(v) for v in box)
    return square_box_around(x, y, x + w, y + h, scale)


def image_crop_box(width: int, height: int) -> np.ndarray:
    """The square around a whole image (aspect kept; the short side is zero-padded)."""
    return square_box_around(0, 0, width, height)


def predict_crop_boxes(
    model: nn.Module,
    images: list[Image.Image],
    crop_boxes: list[np.ndarray],
    image_size: int,
    batch_size: int = 32,
    mirror: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the model on one crop per (image, crop box) pair; with ``mirror`` on each crop flipped
    left-right (``mirror_crop``), its keypoints mapped back to the unflipped image.

    Returns keypoints (N, K, 2) in original image pixels, confidence (N, K) and the crop boxes used
    (N, 4; a mirrored one has a negative width).
    """

    def cut(image: Image.Image, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        crop, used = crop_square(image, box, image_size)
        return mirror_crop(crop, used) if mirror else (crop, used)

    # A buffer, not a parameter: an onnxruntime-backed network (posealign.onnx_model) has no parameters.
    device = next(model.buffers()).device
    coords_all, confidence_all, used_all = [], [], []
    for start in range(0, len(images), batch_size):
        crops, used = zip(
            *(
                cut(image, box)
                for image, box in zip(
                    images[start : start + batch_size], crop_boxes[start : start + batch_size], strict=True
                )
            ),
            strict=True,
        )
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)
        _, coords, confidence = run_on_crops(model, batch, device)
        used_boxes = torch.from_numpy(np.stack(used))
        coords_all.append(crop_to_image(coords, used_boxes, image_size).numpy())
        confidence_all.append(confidence.numpy())
        used_all.append(used_boxes.numpy())
    if not coords_all:
        return np.zeros((0, 0, 2), np.float32), np.zeros((0, 0), np.float32), np.zeros((0, 4), np.float32)
    return np.concatenate(coords_all), np.concatenate(confidence_all), np.concatenate(used_all)


def predict_images(
    model: nn.Module,
    images: list[Image.Image],
    boxes: list[list[list[float]]] | None,
    image_size: int,
    batch_size: int = 32,
    box_scale: float = DEFAULT_BOX_SCALE,
    mirror: bool = False,
) -> list[list[PosePrediction]]:
    """Poses of the objects in each image: one per box of ``boxes[i]`` (x, y, w, h), or one for the
    whole image when ``boxes`` is None. Keypoints come back in each image's own pixels. ``mirror``:
    the network sees each crop flipped left-right (a right hand for a model of left hands)."""
    if boxes is not None and len(boxes) != len(images):
        raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
    jobs: list[tuple[int, np.ndarray, np.ndarray]] = []  # image index, object box, crop box
    for index, image in enumerate(images):
        if image.width < 2 or image.height < 2:
            raise UserError(f"image {index} is {image.width}x{image.height}; at least 2x2 pixels are needed")
        if boxes is None:
            jobs.append((index, np.array([0, 0, image.width, image.height], np.float32), image_crop_box(*image.size)))
        else:
            for box in boxes[index]:
                jobs.append((index, np.asarray(box, np.float32), object_crop_box(box, box_scale)))
    coords, confidence, used = predict_crop_boxes(
        model, [images[i] for i, _, _ in jobs], [crop for _, _, crop in jobs], image_size, batch_size, mirror
    )
    poses: list[list[PosePrediction]] = [[] for _ in images]
    for n, (index, box, _) in enumerate(jobs):
        poses[index].append(PosePrediction(coords[n], confidence[n], box, used[n]))
    return poses

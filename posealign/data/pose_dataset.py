"""The torch Dataset every loader's records go through: read the image, cut the protocol's crop.

Augmentation is not done here: it runs batched on the training device (``posealign.augmentation``)
so that the teacher's and student's views, their inverses and the keypoints share one affine.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from posealign.data.records import PoseDataset, PoseRecord
from posealign.errors import DatasetFormatError, UserError
from posealign.image_crops import crop_square, mirror_crop, read_rgb_image


def crop_record(record: PoseRecord, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut ``record.crop_box`` (zero-padded outside the image) and resize it to ``size`` x ``size``.

    Returns the crop (size, size, 3) uint8, keypoints in crop pixels (K, 2) and the crop box actually
    used (x, y, w, h), which maps crop coordinates back: x_image = x + x_crop * w/size (per axis).

    A mirrored record's crop is flipped left-right, its keypoints as the anchors flip them before
    resizing (x -> side - 1 - x in the cut square), and its box has a negative width starting at the
    square's right column, so the same mapping takes predictions back to the original image.
    """
    image = read_rgb_image(
        record.image,
        missing_fix="check the dataset root or the annotation's file name",
        broken_fix="re-download or remove it from the annotations",
        error=DatasetFormatError,
    )
    crop, crop_box = crop_square(image, record.crop_box, size)
    side = float(crop_box[2])
    keypoints = (record.keypoints - crop_box[:2]) * (size / side)
    if record.mirror:
        keypoints[:, 0] = (side - 1.0 - (record.keypoints[:, 0] - crop_box[0])) * (size / side)
        crop, crop_box = mirror_crop(crop, crop_box)
    return crop, keypoints.astype(np.float32), crop_box


class CroppedPoseDataset(Dataset):
    """Items: ``image`` (3, S, S) uint8, ``keypoints`` (K, 2) crop pixels, ``visible`` (K,) bool,
    ``crop_box`` (4,) for mapping back to the original image, ``index``.

    preload: decode every crop once at construction (the built-in benchmark fits in memory and its
    PNG decoding would otherwise dominate a CPU step).
    """

    def __init__(self, dataset: PoseDataset, image_size: int, preload: bool = False) -> None:
        self.dataset = dataset
        self.image_size = image_size
        self._cache: list[dict] | None = None
        if preload:
            self._cache = [self._load(i) for i in range(len(dataset))]

    def __len__(self) -> int:
        return len(self.dataset)

    def _load(self, index: int) -> dict:
        record = self.dataset.records[index]
        crop, keypoints, crop_box = crop_record(record, self.image_size)
        inside = (keypoints >= 0).all(1) & (keypoints <= self.image_size - 1).all(1)
        return {
            "image": torch.from_numpy(crop.copy()).permute(2, 0, 1).contiguous(),
            "keypoints": torch.from_numpy(keypoints),
            "visible": torch.from_numpy(record.visible & inside),
            "crop_box": torch.from_numpy(crop_box),
            "index": index,
        }

    def __getitem__(self, index: int) -> dict:
        if self._cache is not None:
            return self._cache[index]
        return self._load(index)


def check_keypoint_count(dataset: PoseDataset, expected: int, where: str) -> None:
    if dataset.keypoint_set.num_keypoints != expected:
        raise UserError(
            f"{dataset.root}: {where} has {dataset.keypoint_set.num_keypoints} keypoints per object but the "
            f"model predicts {expected}; use data.keypoint_set matching the dataset"
        )

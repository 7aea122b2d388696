"""The one sample contract every dataset loader produces.

A loader turns a dataset's files into a :class:`PoseDataset` (a list of :class:`PoseRecord` plus the
keypoint set they are expressed in). Everything downstream (cropping, augmentation, training,
evaluation, ``posealign data inspect``) reads only this contract.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from posealign.errors import DatasetFormatError
from posealign.image_crops import read_image_size
from posealign.keypoints import KeypointSet


@dataclass
class PoseRecord:
    """One annotated object in one image.

    keypoints: (K, 2) float32, x/y in the original image's pixels, in the keypoint set's order.
    visible:   (K,) bool, True where the keypoint is labeled and visible.
    bbox:      (4,) float32, x, y, w, h of the object in original pixels (bbox-normalised PCK).
    crop_box:  (4,) float32, x, y, w, h of the square region the protocol feeds to the network;
               parts outside the image are zero padding (LSP's aspect-kept resize is a crop_box
               around the whole image).
    mirror:    the crop is flipped left-right before the network sees it (the hand datasets turn
               every hand into one handedness, as the anchors do); ``keypoints`` stay in the
               original image's pixels.
    """

    image: Path
    keypoints: np.ndarray
    visible: np.ndarray
    bbox: np.ndarray
    crop_box: np.ndarray
    split: str = "train"
    category: str | None = None
    meta: dict = field(default_factory=dict)
    mirror: bool = False


@dataclass
class PoseDataset:
    """Records of one split, the keypoint set they use, and the root their image paths hang off."""

    name: str
    root: Path
    keypoint_set: KeypointSet
    records: list[PoseRecord]

    def __len__(self) -> int:
        return len(self.records)


class RecordCollector:
    """The records a loader builds, and the images they name that are not on disk.

    Every loader lists images in its annotation files; a missing one is either an error (the user
    extracted part of a release) or, for ``posealign data inspect``, something to count. Records
    are built either way, so that ``check_images=False`` still reads every annotation.
    """

    def __init__(self) -> None:
        self.records: list[PoseRecord] = []
        self.missing: list[Path] = []

    def check_image(self, image: Path) -> bool:
        """True when ``image`` is a file; a missing one is remembered for :meth:`checked_records`."""
        if image.is_file():
            return True
        self.missing.append(image)
        return False

    def add(
        self,
        image: Path,
        keypoints: np.ndarray,
        visible: np.ndarray,
        crop_box: np.ndarray,
        split: str,
        bbox: np.ndarray | None = None,
        category: str | None = None,
        meta: dict | None = None,
        mirror: bool = False,
    ) -> None:
        """Append one record; ``bbox`` None is the tight box of the visible keypoints."""
        self.records.append(
            PoseRecord(
                image=image,
                keypoints=keypoints,
                visible=visible,
                bbox=bbox_from_keypoints(keypoints, visible) if bbox is None else bbox,
                crop_box=crop_box,
                split=split,
                category=category,
                meta={} if meta is None else meta,
                mirror=mirror,
            )
        )

    def checked_records(self, check_images: bool, missing_message: Callable[[list[Path]], str]) -> list[PoseRecord]:
        """The records, or a :class:`DatasetFormatError` with ``missing_message(missing)`` when
        ``check_images`` is set and an image is missing (the message names the first one and the fix)."""
        if check_images and self.missing:
            raise DatasetFormatError(missing_message(self.missing))
        return self.records


def square_box_around(x0: float, y0: float, x1: float, y1: float, scale: float = 1.0) -> np.ndarray:
    """A square (x, y, w, h) centred on a box, side = longest side of the box times ``scale``."""
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    side = max(x1 - x0, y1 - y0, 1.0) * scale
    return np.array([cx - side / 2.0, cy - side / 2.0, side, side], dtype=np.float32)


def prepared_crop_size(sample: dict, image: Path, exists: bool) -> tuple[int, int] | None:
    """A prepared crop's (width, height): as the annotation records it, else from the image's header
    when the image exists, else None (for ``whole_crop_in_frame``)."""
    if "width" in sample and "height" in sample:
        return sample["width"], sample["height"]
    return read_image_size(image) if exists else None


def whole_crop_in_frame(keypoints: np.ndarray, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(visible, crop_box) for a sample whose image is already the person's crop (SURREAL's and
    Human3.6M's prepared crops): a joint outside the image is invisible, the crop is the whole image.
    ``size`` None (image missing, size not recorded): every joint counts, cropped around them."""
    if size is None:
        return np.ones(len(keypoints), dtype=bool), square_box_around(*keypoints.min(0), *keypoints.max(0), scale=1.5)
    width, height = size
    inside_x = (keypoints[:, 0] >= 0) & (keypoints[:, 0] < width)
    visible = inside_x & (keypoints[:, 1] >= 0) & (keypoints[:, 1] < height)
    return visible, square_box_around(0, 0, width, height)


def bbox_from_keypoints(keypoints: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Tight (x, y, w, h) box of the visible keypoints (all keypoints if none is visible)."""
    points = keypoints[visible] if visible.any() else keypoints
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return np.array([x0, y0, x1 - x0, y1 - y0], dtype=np.float32)


def held_out_keys(keys: list[str], fraction: float) -> set[str]:
    """A deterministic test hold-out: the first ``fraction`` of ``keys`` ordered by a hash of each key
    (at least one key when fraction > 0 and there are two or more). Splits by video, shot or image
    use it so that no group lands in both splits and the split does not depend on file order."""
    ranked = sorted(set(keys), key=lambda key: hashlib.sha1(key.encode()).hexdigest())
    count = round(fraction * len(ranked))
    if fraction > 0 and len(ranked) > 1:
        count = max(count, 1)
    return set(ranked[:count])


def read_json_file(path: Path, fix: str) -> object:
    """``json.loads`` of a file, with a one-line error naming the file, the line and ``fix``."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetFormatError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}); {fix}") from None


def read_matlab_file(path: Path, refetch_hint: str, variable_names: list[str] | None = None) -> dict:
    """``scipy.io.loadmat`` with one-line errors naming the file: v7.3 (HDF5) files and unreadable
    files each get their fix; ``refetch_hint`` says where a good copy comes from."""
    try:
        return scipy.io.loadmat(str(path), variable_names=variable_names)
    except NotImplementedError:
        raise DatasetFormatError(
            f"{path}: MATLAB v7.3 (HDF5) file; re-save it in MATLAB with save(..., '-v7')"
        ) from None
    except (MatReadError, ValueError, TypeError, OSError) as error:
        raise DatasetFormatError(
            f"{path}: not a readable MATLAB file ({' '.join(str(error).split())}); {refetch_hint}"
        ) from None

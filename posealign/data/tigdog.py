"""TigDog (behaviorDiscovery2.0): horse and tiger video frames with 18 of their landmarks.

Layout (``root`` is the ``behaviorDiscovery2.0`` folder, or a folder holding it)::

    root/ranges/{horse,tiger}/ranges.mat      variable ``ranges``, rows [shot, start frame, end frame]
    root/landmarks/{animal}/{shot}.mat        variable ``landmarks``, one entry per frame of the shot
    root/{animal}/{frame:08d}.jpg             frames, numbered across the whole animal

A landmark entry holds the frame's coordinates (K x 2) and visibility (K x 1). The released
annotations store ``landmarks`` as a cell array (one cell per frame) of 1 x 1 structs whose first
field is the coordinates and second the visibility; the UDAPE/DAML code reads them by position, not
by field name, and so does this loader (the field names are not documented). Also accepted: cells
holding a K x 3 (or K x 2) matrix, and a numeric T x K x 3 array. Only the first 18 landmarks are
kept; the tiger's are permuted into the horse's (Animal18) order by ``TIGER_TO_ANIMAL18``.

A keypoint is visible when its flag is set and both coordinates are positive (the released code
draws a target only for positive coordinates). Shots listed in ``ranges.mat`` without a landmark
file are skipped, as the released code does.

Crop (released code): the box of the visible keypoints padded by 15 px, clipped to the image, then
a square of side 1.25 x its longer side around its centre (``scale = max side / 200 x 1.25`` in the
200-px convention). ``bbox`` is the padded, clipped box. A frame with no visible keypoint gets the
whole image.

Splits by video: whole shots are held out for ``test``. A shot is held out when its rank, ordered
by a hash of ``"{animal}/{shot}"``, falls in the first ``test_fraction`` of the animal's shots:
deterministic, independent of NumPy's random streams, and stable when shots are added.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posealign.data.records import (
    PoseDataset,
    PoseRecord,
    RecordCollector,
    held_out_keys,
    read_matlab_file,
    square_box_around,
)
from posealign.errors import DatasetFormatError
from posealign.image_crops import read_image_size
from posealign.keypoints import ANIMAL18

ANIMALS = ("horse", "tiger")
SPLITS = ("train", "test", "all")
TIGER_TO_ANIMAL18 = tuple(i - 1 for i in (1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 17, 18, 13, 14, 9, 10, 11, 12))
NUM_KEPT = 18


def load_tigdog(
    root: str | Path,
    split: str = "train",
    animal: str = "all",
    test_fraction: float = 0.2,
    pad: float = 15.0,
    crop_scale: float = 1.25,
    check_images: bool = True,
) -> PoseDataset:
    """Read the frames of ``animal`` (``horse``, ``tiger`` or ``all``) in ``split`` (train/test/all)."""
    root = Path(root)
    if not (root / "ranges").is_dir() and (root / "behaviorDiscovery2.0" / "ranges").is_dir():
        root = root / "behaviorDiscovery2.0"
    if split not in SPLITS:
        raise DatasetFormatError(f"{root}: TigDog has splits {list(SPLITS)}, not {split!r}; pass one of them")
    if animal not in (*ANIMALS, "all"):
        raise DatasetFormatError(f"{root}: TigDog animal must be 'horse', 'tiger' or 'all', not {animal!r}")
    records: list[PoseRecord] = []
    for name in ANIMALS if animal == "all" else (animal,):
        records.extend(_load_animal(root, name, split, test_fraction, pad, crop_scale, check_images))
    return PoseDataset(name="tigdog", root=root, keypoint_set=ANIMAL18, records=records)


def _load_animal(
    root: Path, animal: str, split: str, test_fraction: float, pad: float, crop_scale: float, check_images: bool
) -> list[PoseRecord]:
    shots = read_ranges(root / "ranges" / animal / "ranges.mat")
    landmark_dir = root / "landmarks" / animal
    annotated = [row for row in shots if (landmark_dir / f"{row[0]}.mat").is_file()]
    if not annotated:
        raise DatasetFormatError(
            f"{landmark_dir}: no landmark file for any of the {len(shots)} shots in ranges.mat; "
            f"extract behaviorDiscovery2.0's landmarks/{animal}"
        )
    held_out = held_out_keys([f"{animal}/{shot}" for shot, _, _ in annotated], test_fraction)
    collector = RecordCollector()
    for shot, start, end in annotated:
        is_test = f"{animal}/{shot}" in held_out
        if (split == "train" and is_test) or (split == "test" and not is_test):
            continue
        path = landmark_dir / f"{shot}.mat"
        frames = read_landmarks(path)
        if len(frames) < end - start + 1:
            raise DatasetFormatError(
                f"{path}: {len(frames)} landmark frames but ranges.mat gives shot {shot} frames {start}..{end}; "
                f"use the landmarks and ranges of the same release"
            )
        size = None
        for offset, frame in enumerate(range(start, end + 1)):
            image = root / animal / f"{frame:08d}.jpg"
            if collector.check_image(image) and size is None:  # frames of a shot share one size
                size = read_image_size(image)
            landmarks = frames[offset]
            if len(landmarks) < NUM_KEPT:
                raise DatasetFormatError(
                    f"{path}: frame {offset} has {len(landmarks)} landmarks, expected at least {NUM_KEPT}; "
                    f"use behaviorDiscovery2.0's landmark files"
                )
            landmarks = landmarks[:NUM_KEPT]
            if animal == "tiger":
                landmarks = landmarks[list(TIGER_TO_ANIMAL18)]
            keypoints = landmarks[:, :2].astype(np.float32)
            visible = (landmarks[:, 2] > 0) & (keypoints[:, 0] > 0) & (keypoints[:, 1] > 0)
            bbox, crop_box = _crop_from_visible(keypoints, visible, size, pad, crop_scale)
            collector.add(
                image=image,
                keypoints=keypoints,
                visible=visible,
                bbox=bbox,
                crop_box=crop_box,
                split="test" if is_test else "train",
                category=animal,
                meta={"shot": shot, "frame": frame},
            )
    return collector.checked_records(
        check_images,
        lambda missing: (
            f"{root / animal}: {len(missing)} frame(s) named by ranges.mat are missing, first {missing[0].name}; "
            f"extract behaviorDiscovery2.0's {animal} frames"
        ),
    )


def _crop_from_visible(
    keypoints: np.ndarray, visible: np.ndarray, size: tuple[int, int] | None, pad: float, crop_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    if not visible.any():
        if size is None:
            return np.zeros(4, dtype=np.float32), np.zeros(4, dtype=np.float32)
        width, height = size
        return np.array([0, 0, width, height], dtype=np.float32), square_box_around(0, 0, width, height)
    points = keypoints[visible]
    x0, y0 = points.min(0) - pad
    x1, y1 = points.max(0) + pad
    x0, y0 = max(float(x0), 0.0), max(float(y0), 0.0)
    if size is not None:
        x1, y1 = min(float(x1), size[0]), min(float(y1), size[1])
    bbox = np.array([x0, y0, x1 - x0, y1 - y0], dtype=np.float32)
    return bbox, square_box_around(x0, y0, x1, y1, crop_scale)


def read_ranges(path: Path) -> list[tuple[int, int, int]]:
    """``ranges.mat`` -> [(shot, start frame, end frame), ...]."""
    if not path.is_file():
        raise DatasetFormatError(f"{path}: not found; extract behaviorDiscovery2.0's ranges/ next to landmarks/")
    ranges = _load_variable(path, "ranges")
    array = np.atleast_2d(np.asarray(ranges))
    if array.ndim != 2 or array.shape[1] != 3 or not np.issubdtype(array.dtype, np.number):
        raise DatasetFormatError(
            f"{path}: 'ranges' has shape {list(array.shape)}, expected N x 3 rows [shot, start, end]"
        )
    return [(int(shot), int(start), int(end)) for shot, start, end in array]


def read_landmarks(path: Path) -> list[np.ndarray]:
    """A shot's landmark file -> one (K, 3) array (x, y, visibility) per frame."""
    value = _load_variable(path, "landmarks")
    if isinstance(value, np.ndarray) and value.dtype != object and value.dtype.names is None:
        if value.ndim == 3 and value.shape[2] >= 3:
            return [np.asarray(frame[:, :3], dtype=np.float64) for frame in value]
        raise DatasetFormatError(f"{path}: numeric 'landmarks' of shape {list(value.shape)}, expected frames x K x 3")
    entries = value.reshape(-1, order="F") if isinstance(value, np.ndarray) else [value]
    return [_landmark_entry(entry, path, index) for index, entry in enumerate(entries)]


def _landmark_entry(entry: object, path: Path, index: int) -> np.ndarray:
    while isinstance(entry, np.ndarray) and entry.dtype == object and entry.size == 1:
        entry = entry.reshape(-1)[0]  # nested 1 x 1 cells
    if isinstance(entry, np.ndarray) and entry.dtype.names is not None:  # 1 x 1 struct array
        entry = entry.reshape(-1)[0]
    if isinstance(entry, np.void) and entry.dtype.names is not None:  # struct: coordinates, visibility by position
        coords = np.asarray(entry[0], dtype=np.float64)
        visibility = np.asarray(entry[1], dtype=np.float64) if len(entry.dtype.names) > 1 else None
    elif isinstance(entry, np.ndarray) and entry.ndim == 2 and entry.shape[1] in (2, 3):
        coords, visibility = np.asarray(entry[:, :2], dtype=np.float64), None
        if entry.shape[1] == 3:
            visibility = np.asarray(entry[:, 2], dtype=np.float64)
    else:
        raise DatasetFormatError(
            f"{path}: landmark entry {index} is {type(entry).__name__}, expected a struct "
            f"(coordinates, visibility) or a K x 3 matrix; use behaviorDiscovery2.0's landmark files"
        )
    if coords.ndim != 2 or coords.shape[1] != 2:
        if coords.ndim == 2 and coords.shape[0] == 2:
            coords = coords.T
        else:
            raise DatasetFormatError(
                f"{path}: landmark entry {index} has coordinates of shape {list(coords.shape)}, expected K x 2"
            )
    visibility = np.ones(len(coords)) if visibility is None else visibility.reshape(-1)
    if len(visibility) != len(coords):
        raise DatasetFormatError(
            f"{path}: landmark entry {index} has {len(coords)} coordinates but {len(visibility)} visibility flags; "
            f"they must match"
        )
    return np.concatenate([coords, visibility[:, None]], axis=1)


def _load_variable(path: Path, name: str) -> object:
    mat = read_matlab_file(path, "re-extract it")
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetFormatError(f"{path}: no variable {name!r} (found {found}); use behaviorDiscovery2.0's files")
    return mat[name]

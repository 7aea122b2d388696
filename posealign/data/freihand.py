"""FreiHAND, the official training release (``FreiHAND_pub_v2``), read as the anchors read it.

Layout (``root`` is the folder the release unpacks into)::

    root/training_K.json          N camera matrices, 3 x 3
    root/training_xyz.json        N hands, 21 x 3 camera coordinates, already in Hand21's order
    root/training/rgb/%08d.jpg    4 N renders of 224 x 224: each hand in four versions

Image ``i + N * v`` shows hand ``i`` in version ``v`` (0 green screen ``gs``, 1 homogenised ``hom``,
2 ``sample``, 3 ``auto``); the release has N = 32560. The 2D keypoints are ``xyz`` projected with
``K`` (``u = K xyz``, divided by its third row), every keypoint counted as visible, as the anchors
do. The crop is the keypoints' 1.5x square box (``hand_boxes``) on the 224 x 224 image; every hand
is mirrored, as the anchors' ``FreiHand`` does (all its samples have ``left`` False), so FreiHAND's
right hands have RHD's mirrored handedness.

Samples and splits (UDAPE's and RegDA's ``FreiHand``): ``version="all"`` lists the ``gs``, ``auto``,
``sample`` and ``hom`` versions of every hand, in that order; the list is shuffled with seed 42 and
the first ``min(20 %, 3200)`` are ``test`` (``seeded_split``). ``training_mano.json`` is not read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posealign.data.hand_boxes import hand_crop_box
from posealign.data.records import PoseDataset, RecordCollector, read_json_file
from posealign.data.seeded_split import SPLITS, seeded_split
from posealign.errors import DatasetFormatError
from posealign.keypoints import HAND21

VERSIONS = ("gs", "hom", "sample", "auto")  # image-id blocks, in the release's order
ALL_VERSIONS_ORDER = ("gs", "auto", "sample", "hom")  # the anchors' concatenation for version "all"
IMAGE_SIZE = 224
NUM_KEYPOINTS = 21


def load_freihand(
    root: str | Path, split: str = "train", version: str = "all", check_images: bool = True
) -> PoseDataset:
    """Read the release's K and xyz, project, and take ``split``; see the module docstring."""
    root = Path(root)
    if split not in SPLITS:
        raise DatasetFormatError(f"{root}: FreiHAND has splits {list(SPLITS)}, not {split!r}; pass one of them")
    if version != "all" and version not in VERSIONS:
        raise DatasetFormatError(f"{root}: FreiHAND version must be 'all' or one of {list(VERSIONS)}, not {version!r}")
    intrinsics = read_array_list(root / "training_K.json", (3, 3), "camera matrices")
    points = read_array_list(root / "training_xyz.json", (NUM_KEYPOINTS, 3), "keypoints")
    if len(intrinsics) != len(points):
        raise DatasetFormatError(
            f"{root / 'training_xyz.json'}: {len(points)} hands but training_K.json has {len(intrinsics)}; "
            "use both files of one release"
        )
    count = len(points)
    samples = [
        (index, VERSIONS.index(name))
        for name in (ALL_VERSIONS_ORDER if version == "all" else (version,))
        for index in range(count)
    ]
    collector = RecordCollector()
    for index, version_index in seeded_split(samples, split):
        image = root / "training" / "rgb" / f"{index + count * version_index:08d}.jpg"
        keypoints = project(points[index], intrinsics[index])  # float64: the box rounds as the anchors' does
        collector.check_image(image)
        collector.add(
            image,
            keypoints.astype(np.float32),
            np.ones(NUM_KEYPOINTS, dtype=bool),
            hand_crop_box(keypoints, IMAGE_SIZE, IMAGE_SIZE),
            split,
            meta={"hand": index, "version": VERSIONS[version_index]},
            mirror=True,
        )
    records = collector.checked_records(
        check_images,
        lambda missing: (
            f"{missing[0]}: image not found ({len(missing)} listed image(s) missing); "
            "extract training/rgb/ of FreiHAND_pub_v2.zip"
        ),
    )
    return PoseDataset(name="freihand", root=root, keypoint_set=HAND21, records=records)


def project(xyz: np.ndarray, intrinsic: np.ndarray) -> np.ndarray:
    """The anchors' ``projectPoints``: camera coordinates -> pixels."""
    uv = (intrinsic @ xyz.T).T
    return uv[:, :2] / uv[:, 2:]


def read_array_list(path: Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    """A JSON list of equal-shaped arrays as one float64 array, with one-line errors naming the file."""
    if not path.is_file():
        raise DatasetFormatError(f"{path}: not found; unpack FreiHAND_pub_v2.zip and give its folder")
    values = read_json_file(path, "re-extract it from FreiHAND_pub_v2.zip")
    if not isinstance(values, list) or not values:
        raise DatasetFormatError(f"{path}: expected a non-empty JSON list of {what}; use the release's file")
    for index, value in enumerate(values):
        try:
            found = np.shape(value) if isinstance(value, list) else ()
        except ValueError:  # ragged nesting
            found = ()
        if found != shape:
            raise DatasetFormatError(
                f"{path}: entry {index} has shape {list(found)}, expected {list(shape)} ({what}); "
                "use the release's file"
            )
    return np.asarray(values, dtype=np.float64)

"""Hand-3D-Studio (H3D) in the ``H3D_crop`` layout the anchors read.

Layout (``root`` is ``H3D_crop`` or the folder holding it)::

    root/annotation.json      [{"name": "part1/....jpg", "keypoint2d": 21 x 2, "keypoint3d": 21 x 3,
                                "intrinsic_matrix": 3 x 3, "without_object": 0 | 1}, ...]
    root/part1/ ... part5/    square hand crops (1.5x the hand), the paths ``name`` gives

Keypoints are in Hand21's order, in the crop's pixels, and all count as visible (the anchors' H3D
class marks all 21 visible). The images are already crops, so the network is fed the whole image.

Samples and splits (UDAPE's and RegDA's ``Hand3DStudio``): ``task="noobject"`` (the default, and
the RHD -> H3D task's) keeps the hands with ``without_object`` 1, ``"object"`` those with 0, ``"all"``
every hand; the list is shuffled with seed 42 and the first ``min(20 %, 3200)`` are ``test``
(``seeded_split``). The anchors read this cropped copy from a download that is no longer served;
docs/datasets.md says how to obtain the dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posealign.data.records import PoseDataset, RecordCollector, read_json_file, square_box_around
from posealign.data.seeded_split import SPLITS, seeded_split
from posealign.errors import DatasetFormatError
from posealign.image_crops import read_image_size
from posealign.keypoints import HAND21

TASKS = ("noobject", "object", "all")
NUM_KEYPOINTS = 21
RELEASE_FOLDER = "H3D_crop"


def load_h3d(root: str | Path, split: str = "train", task: str = "noobject", check_images: bool = True) -> PoseDataset:
    """Read ``annotation.json``, keep ``task``'s hands and take ``split``; see the module docstring."""
    root = Path(root)
    if not (root / "annotation.json").is_file() and (root / RELEASE_FOLDER / "annotation.json").is_file():
        root = root / RELEASE_FOLDER
    if split not in SPLITS:
        raise DatasetFormatError(f"{root}: H3D has splits {list(SPLITS)}, not {split!r}; pass one of them")
    if task not in TASKS:
        raise DatasetFormatError(f"{root}: H3D task must be one of {list(TASKS)}, not {task!r}")
    path = root / "annotation.json"
    if not path.is_file():
        raise DatasetFormatError(f"{path}: not found; give the {RELEASE_FOLDER} folder (annotation.json, part1/ ...)")
    samples = read_json_file(path, f"re-extract {RELEASE_FOLDER}")
    if not isinstance(samples, list):
        raise DatasetFormatError(f"{path}: expected a JSON list of hands, found {type(samples).__name__}")
    for index, sample in enumerate(samples):
        if not isinstance(sample, dict) or not {"name", "keypoint2d", "without_object"} <= set(sample):
            raise DatasetFormatError(
                f"{path}: hand {index} lacks 'name', 'keypoint2d' or 'without_object'; each hand needs all three"
            )
    if task != "all":
        wanted = 1 if task == "noobject" else 0
        samples = [sample for sample in samples if int(sample["without_object"]) == wanted]

    collector = RecordCollector()
    for sample in seeded_split(samples, split):
        keypoints = np.asarray(sample["keypoint2d"], dtype=np.float32)
        if keypoints.shape != (NUM_KEYPOINTS, 2):
            raise DatasetFormatError(
                f"{path}: hand {sample['name']} has keypoint2d of shape {list(keypoints.shape)}, expected "
                f"[{NUM_KEYPOINTS}, 2] (Hand21); use the {RELEASE_FOLDER} annotation"
            )
        image = root / sample["name"]
        if collector.check_image(image):
            crop_box = square_box_around(0, 0, *read_image_size(image))
        else:  # the size is unknown: the crop the anchors cached, around the keypoints
            crop_box = square_box_around(*keypoints.min(0), *keypoints.max(0), scale=1.5)
        collector.add(
            image,
            keypoints,
            np.ones(NUM_KEYPOINTS, dtype=bool),
            crop_box,
            split,
            meta={"name": sample["name"], "without_object": int(sample["without_object"])},
        )
    records = collector.checked_records(
        check_images,
        lambda missing: (
            f"{missing[0]}: image not found ({len(missing)} listed image(s) missing); "
            f"extract every part folder of {RELEASE_FOLDER}"
        ),
    )
    return PoseDataset(name="h3d", root=root, keypoint_set=HAND21, records=records)

"""Animal-Pose (Cao et al., ICCV 2019), part I: dogs, cats, sheep, horses and cows with 20 keypoints.

Layout (``root`` is the ``animal-pose`` folder, or a folder holding it)::

    root/keypoints.json     {"images": {image id: file name}, "annotations": [...], "categories": [...]}
    root/images/<file name>

An annotation has ``image_id``, ``bbox`` [x1, y1, x2, y2] (corners, not COCO's x, y, w, h),
``keypoints`` (20 x 3: x, y, visibility) and ``category_id``. The 20 keypoints map to Animal14 by
``ANIMALPOSE_TO_ANIMAL14`` (METHOD.md): eyes, paws (hooves), knees, elbows. Category names come from
the file's ``categories`` list; a file without one is read with the released ids
``CATEGORY_IDS`` (dog 1, cat 2, sheep 3, horse 4, cow 5), an assumption stated here. ``images`` may
also be a COCO-style list of ``{"id", "file_name"}``.

The papers evaluate per category (``category="dog"`` ...). The released code used cached
train/test annotation lists; here whole images are held out for ``test``: an image is in ``test``
when its rank, ordered by a hash of its id, falls in the first ``test_fraction`` of the images
(deterministic; an image's animals never straddle splits). Crop: a square of 1.25 x the longer
side of the box, around its centre (released code).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posealign.data.records import PoseDataset, RecordCollector, held_out_keys, read_json_file, square_box_around
from posealign.errors import DatasetFormatError
from posealign.keypoints import ANIMAL14

ANIMALPOSE_TO_ANIMAL14 = (0, 1, 13, 14, 15, 16, 9, 10, 11, 12, 5, 6, 7, 8)
CATEGORY_IDS = {"dog": 1, "cat": 2, "sheep": 3, "horse": 4, "cow": 5}
SPLITS = ("train", "test", "all")
NUM_ANIMALPOSE_KEYPOINTS = 20


def load_animalpose(
    root: str | Path,
    split: str = "train",
    category: str | None = None,
    test_fraction: float = 0.2,
    crop_scale: float = 1.25,
    annotation_file: str | Path | None = None,
    check_images: bool = True,
) -> PoseDataset:
    """Read ``root/keypoints.json``; ``category`` None keeps all five animals (each record names its own)."""
    root = Path(root)
    if not (root / "keypoints.json").is_file() and (root / "animal-pose" / "keypoints.json").is_file():
        root = root / "animal-pose"
    path = Path(annotation_file) if annotation_file else root / "keypoints.json"
    if split not in SPLITS:
        raise DatasetFormatError(f"{root}: Animal-Pose has splits {list(SPLITS)}, not {split!r}; pass one of them")
    if not path.is_file():
        raise DatasetFormatError(f"{path}: not found; put Animal-Pose's keypoints.json at the dataset root")
    data = read_json_file(path, "re-download it")
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DatasetFormatError(
            f"{path}: needs 'images' (id -> file name) and 'annotations'; use Animal-Pose's keypoints.json"
        )

    images = _image_names(data["images"], path)
    names_by_id = _category_names(data.get("categories"), path)
    if category is not None:
        wanted = category.lower()
        if wanted not in names_by_id.values():
            raise DatasetFormatError(
                f"{path}: no category {category!r}; categories here: {sorted(names_by_id.values())}"
            )
    held_out = held_out_keys([str(a.get("image_id")) for a in data["annotations"]], test_fraction)

    collector = RecordCollector()
    for index, annotation in enumerate(data["annotations"]):
        name = names_by_id.get(annotation.get("category_id"))
        if category is not None and name != wanted:
            continue
        image_id = str(annotation.get("image_id"))
        is_test = image_id in held_out
        if (split == "train" and is_test) or (split == "test" and not is_test):
            continue
        if image_id not in images:
            raise DatasetFormatError(
                f"{path}: annotation {index} points to image_id {image_id}, which 'images' does not list"
            )
        triples = np.asarray(annotation.get("keypoints", []), dtype=np.float32)
        if triples.size != NUM_ANIMALPOSE_KEYPOINTS * 3:
            raise DatasetFormatError(
                f"{path}: annotation {index} has {triples.size} keypoint values, expected 20 x 3; "
                f"use Animal-Pose's 20-keypoint annotations"
            )
        triples = triples.reshape(NUM_ANIMALPOSE_KEYPOINTS, 3)[list(ANIMALPOSE_TO_ANIMAL14)]
        box = np.asarray(annotation.get("bbox", []), dtype=np.float32).reshape(-1)
        if box.size != 4:
            raise DatasetFormatError(
                f"{path}: annotation {index} has bbox {annotation.get('bbox')}, expected [x1, y1, x2, y2]"
            )
        x1, y1, x2, y2 = (float(v) for v in box)
        image = root / "images" / images[image_id]
        collector.check_image(image)
        collector.add(
            image=image,
            keypoints=triples[:, :2].copy(),
            visible=triples[:, 2] > 0,
            bbox=np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32),
            crop_box=square_box_around(x1, y1, x2, y2, crop_scale),
            split="test" if is_test else "train",
            category=name,
            meta={"image_id": image_id, "annotation_index": index},
        )
    records = collector.checked_records(
        check_images,
        lambda missing: (
            f"{path}: {len(missing)} image(s) it names are missing from {root / 'images'}, "
            f"first {missing[0].name}; extract Animal-Pose's images/"
        ),
    )
    return PoseDataset(name="animalpose", root=root, keypoint_set=ANIMAL14, records=records)


def _image_names(images: object, path: Path) -> dict[str, str]:
    if isinstance(images, dict):
        return {str(k): str(v) for k, v in images.items()}
    if isinstance(images, list) and all(isinstance(i, dict) and "id" in i and "file_name" in i for i in images):
        return {str(i["id"]): str(i["file_name"]) for i in images}
    raise DatasetFormatError(
        f"{path}: 'images' must map image id -> file name (or list {{id, file_name}}); use Animal-Pose's keypoints.json"
    )


def _category_names(categories: object, path: Path) -> dict[int, str]:
    if categories is None:
        return {v: k for k, v in CATEGORY_IDS.items()}
    try:
        return {int(c["id"]): str(c["name"]).lower() for c in categories}
    except (TypeError, KeyError, ValueError):
        raise DatasetFormatError(f"{path}: 'categories' must be a list of {{id, name}}; fix or remove it") from None

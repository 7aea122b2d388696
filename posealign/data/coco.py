"""COCO keypoints JSON: the format of user data and of the built-in benchmark.

One category (its ``keypoints`` names and 1-based ``skeleton``) defines the keypoint set, unless a
known set is named, in which case the file's keypoint count must match it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posealign.data.records import PoseDataset, RecordCollector, read_json_file, square_box_around
from posealign.errors import DatasetFormatError
from posealign.image_crops import read_image_size
from posealign.keypoints import KeypointSet, get_keypoint_set, keypoint_set_from_coco_category


def load_coco(
    root: str | Path,
    split: str = "train",
    annotation_file: str | Path | None = None,
    keypoint_set: str | KeypointSet | None = None,
    category: str | None = None,
    crop: str = "bbox",
    crop_scale: float = 1.25,
) -> PoseDataset:
    """Read ``root/annotations/{split}.json`` (or ``annotation_file``) with images under ``root``.

    crop: ``"bbox"`` feeds a square of ``crop_scale`` x the object's box to the network (the usual
    top-down protocol); ``"image"`` feeds the whole image, aspect kept and zero-padded.
    """
    if crop not in ("bbox", "image"):
        raise DatasetFormatError(f"crop must be 'bbox' or 'image', not {crop!r}; pass crop=bbox or crop=image")
    root = Path(root)
    path = Path(annotation_file) if annotation_file else root / "annotations" / f"{split}.json"
    if not path.is_absolute() and annotation_file:
        path = root / path
    if not path.is_file():
        raise DatasetFormatError(f"{path}: annotation file not found; pass the COCO keypoints JSON of split {split!r}")
    coco = read_json_file(path, "re-export the annotations")
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise DatasetFormatError(
                f"{path}: no {key!r} list; a COCO keypoints file needs images, annotations and categories"
            )

    categories = {c["id"]: c for c in coco["categories"]}
    if category is not None:
        chosen = [c for c in coco["categories"] if c.get("name") == category]
        if not chosen:
            names = sorted(c.get("name") for c in coco["categories"])
            raise DatasetFormatError(f"{path}: no category named {category!r}; categories here: {names}")
        category_ids = {chosen[0]["id"]}
        defining = chosen[0]
    else:
        category_ids = set(categories)
        defining = coco["categories"][0]
    if isinstance(keypoint_set, str):
        keypoint_set = get_keypoint_set(keypoint_set)
    if keypoint_set is None:
        if not defining.get("keypoints"):
            raise DatasetFormatError(
                f"{path}: category {defining.get('name')!r} has no 'keypoints' list of names; add it (COCO "
                "keypoints format) or name a keypoint set (data.keypoint_set=body16 ...)"
            )
        keypoint_set = keypoint_set_from_coco_category(defining)
    num_keypoints = keypoint_set.num_keypoints

    images = {image["id"]: image for image in coco["images"]}
    collector = RecordCollector()  # image files are not checked: COCO files may list images not extracted
    for annotation in coco["annotations"]:
        if annotation.get("category_id") not in category_ids:
            continue
        flat = np.asarray(annotation.get("keypoints", []), dtype=np.float32)
        if flat.size != 3 * num_keypoints:
            raise DatasetFormatError(
                f"{path}: annotation {annotation.get('id')} has {flat.size // 3} keypoints, "
                f"the keypoint set {keypoint_set.name!r} has {num_keypoints}; fix the file or choose the matching keypoint set"
            )
        triples = flat.reshape(num_keypoints, 3)
        image = images.get(annotation["image_id"])
        if image is None:
            raise DatasetFormatError(
                f"{path}: annotation {annotation.get('id')} points to image_id {annotation['image_id']} which is not in 'images'"
            )
        visible = triples[:, 2] > 0
        if "bbox" in annotation:
            bbox = np.asarray(annotation["bbox"], dtype=np.float32)
        else:
            points = triples[visible, :2] if visible.any() else triples[:, :2]
            bbox = np.array([*points.min(0), *(points.max(0) - points.min(0))], dtype=np.float32)
        if crop == "image":
            crop_box = square_box_around(0, 0, *_image_size(image, root, path))
        else:
            crop_box = square_box_around(bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3], crop_scale)
        collector.add(
            image=root / image["file_name"],
            keypoints=triples[:, :2].copy(),
            visible=visible,
            bbox=bbox,
            crop_box=crop_box,
            split=split,
            category=categories[annotation["category_id"]].get("name"),
            meta={"image_id": annotation["image_id"], "annotation_id": annotation.get("id")},
        )
    return PoseDataset(name="coco", root=root, keypoint_set=keypoint_set, records=collector.records)


def _image_size(image: dict, root: Path, path: Path) -> tuple[int, int]:
    """An ``images`` entry's (width, height), read from the image file when the entry lacks them."""
    if "width" in image and "height" in image:
        return int(image["width"]), int(image["height"])
    from PIL import UnidentifiedImageError

    file = root / str(image.get("file_name"))
    try:
        return read_image_size(file)
    except (OSError, UnidentifiedImageError):
        raise DatasetFormatError(
            f"{path}: image {image.get('id')} has no width/height and {file} cannot be read for them; add "
            "width and height to its 'images' entry"
        ) from None

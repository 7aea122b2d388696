"""Writing the benchmark's labels as COCO keypoints files, the format ``load_coco`` reads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posealign.data.records import PoseRecord, square_box_around
from posealign.files import atomic_write_json
from posealign.keypoints import BODY16, KeypointSet


def write_coco(
    path: str | Path,
    dataset_records: list[PoseRecord],
    keypoint_set: KeypointSet,
    root: str | Path,
    image_sizes: list[tuple[int, int]],
) -> None:
    """Write records as a COCO keypoints file, atomically (temporary file, then rename)."""
    path, root = Path(path), Path(root)
    images, annotations = [], []
    for index, (record, (width, height)) in enumerate(zip(dataset_records, image_sizes, strict=True)):
        images.append(
            {"id": index, "file_name": str(Path(record.image).relative_to(root)), "width": width, "height": height}
        )
        triples = np.concatenate([record.keypoints, record.visible[:, None].astype(np.float32) * 2], axis=1)
        annotations.append(
            {
                "id": index,
                "image_id": index,
                "category_id": 1,
                "iscrowd": 0,
                "bbox": [round(float(v), 2) for v in record.bbox],
                "area": float(record.bbox[2] * record.bbox[3]),
                "keypoints": [round(float(v), 2) for v in triples.reshape(-1)],
                "num_keypoints": int(record.visible.sum()),
            }
        )
    payload = {"images": images, "annotations": annotations, "categories": [keypoint_set.to_coco_category(1)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, payload, indent=None)


def write_split_annotations(
    root: Path,
    split: str,
    rendered: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]],
    image_size: int,
    keypoint_set: KeypointSet = BODY16,
) -> None:
    """``root/annotations/{split}.json`` from (index, keypoints, visible, bbox) rows in index order.

    Every image is fed whole (the crop box is the image): the figures were placed to fit it.
    """
    records = [
        PoseRecord(
            image=root / "images" / split / f"{index:06d}.png",
            keypoints=keypoints,
            visible=visible,
            bbox=bbox,
            crop_box=square_box_around(0, 0, image_size, image_size),
            split=split,
        )
        for index, keypoints, visible, bbox in rendered
    ]
    sizes = [(image_size, image_size)] * len(records)
    write_coco(root / "annotations" / f"{split}.json", records, keypoint_set, root, sizes)

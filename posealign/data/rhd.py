"""Rendered Hand Pose (RHD), the official ``RHD_published_v2`` release, read as the anchors read it.

Layout (``root`` is ``RHD_published_v2`` or the folder holding it)::

    root/training/anno_training.pickle        {sample_id: {"uv_vis": 42 x 3, "xyz": 42 x 3, "K": 3 x 3}}
    root/training/color/{sample_id:05d}.png   320 x 320 renders
    root/evaluation/anno_evaluation.pickle
    root/evaluation/color/{sample_id:05d}.png

``uv_vis`` holds each keypoint's u, v and a visibility flag: rows 0-20 the left hand, 21-41 the
right, each as the wrist, then per finger from thumb to little the tip, DIP, PIP and MCP.
``RHD_TO_HAND21`` puts a hand's rows in Hand21's order.

Which hands are kept (UDAPE's and RegDA's ``RenderedHandPose.get_samples``), per image, left hand
first: the hand's 1.5x square box (``hand_boxes.scaled_square_box`` on a 320 x 320 image) is more
than 64 px a side, more than 16 of its 21 keypoints are visible, and that box shares less than 30 %
of its area with the other hand's tight box. The crop is that box; right hands are mirrored (the
anchors' ``left is False`` flip), so every hand the network sees has one handedness.

Splits: ``train`` (training set), ``test`` (evaluation set), ``all`` (both), and the anchors'
``val`` (every fifth kept hand of ``train``, from the first) and ``train-val`` (the rest of ``train``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from posealign.data.hand_boxes import crop_box_of, keypoint_box, overlap_fraction, scaled_square_box
from posealign.data.records import PoseDataset, RecordCollector
from posealign.errors import DatasetFormatError
from posealign.keypoints import HAND21

SPLIT_FOLDERS = {
    "train": ("training",),
    "test": ("evaluation",),
    "all": ("training", "evaluation"),
    "val": ("training",),
    "train-val": ("training",),
}
SPLITS = tuple(SPLIT_FOLDERS)
RHD_TO_HAND21 = (0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17)
NUM_RHD_KEYPOINTS = 42
IMAGE_SIZE = 320  # every RHD render; the anchors' keep rule assumes it too
MIN_BOX_SIDE = 64
MIN_VISIBLE = 16
MAX_OVERLAP = 0.3
RELEASE_FOLDER = "RHD_published_v2"


def load_rhd(root: str | Path, split: str = "train", check_images: bool = True) -> PoseDataset:
    """Read the hands of ``split`` that the anchors keep; see the module docstring."""
    root = release_root(Path(root))
    if split not in SPLITS:
        raise DatasetFormatError(f"{root}: RHD has splits {list(SPLITS)}, not {split!r}; pass one of them")
    collector = RecordCollector()
    for folder in SPLIT_FOLDERS[split]:
        read_set(root, folder, split, collector)
    if split in ("val", "train-val"):
        collector.records = [r for i, r in enumerate(collector.records) if (i % 5 == 0) == (split == "val")]
        kept = {r.image for r in collector.records}
        collector.missing = [path for path in collector.missing if path in kept]
    records = collector.checked_records(
        check_images,
        lambda missing: (
            f"{missing[0]}: image not found ({len(missing)} listed image(s) missing); "
            f"extract the color/ folders of {RELEASE_FOLDER}"
        ),
    )
    return PoseDataset(name="rhd", root=root, keypoint_set=HAND21, records=records)


def release_root(root: Path) -> Path:
    """``root`` itself, or its ``RHD_published_v2`` subfolder when that is where the release is."""
    if not (root / "training").is_dir() and not (root / "evaluation").is_dir() and (root / RELEASE_FOLDER).is_dir():
        return root / RELEASE_FOLDER
    return root


def read_annotations(path: Path) -> dict:
    if not path.is_file():
        raise DatasetFormatError(f"{path}: not found; give the {RELEASE_FOLDER} folder of the RHD release")
    try:
        with path.open("rb") as file:
            annotations = pickle.load(file)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, ValueError) as error:
        raise DatasetFormatError(
            f"{path}: not a readable pickle ({type(error).__name__}); re-extract it from RHD_v1-1.zip"
        ) from None
    if not isinstance(annotations, dict):
        raise DatasetFormatError(
            f"{path}: expected a dict of sample id -> annotation, found {type(annotations).__name__}; "
            "use the release's file"
        )
    return annotations


def read_set(root: Path, folder: str, split: str, collector: RecordCollector) -> None:
    """Add the kept hands of ``training`` or ``evaluation`` to ``collector``, in the anchors' order."""
    path = root / folder / f"anno_{folder}.pickle"
    left_rows = list(RHD_TO_HAND21)
    right_rows = [row + 21 for row in RHD_TO_HAND21]
    for sample_id, annotation in read_annotations(path).items():
        uv_vis = np.asarray(annotation.get("uv_vis") if isinstance(annotation, dict) else None, dtype=np.float64)
        if uv_vis.shape != (NUM_RHD_KEYPOINTS, 3):
            raise DatasetFormatError(
                f"{path}: sample {sample_id} has uv_vis of shape {list(uv_vis.shape)}, expected "
                f"[{NUM_RHD_KEYPOINTS}, 3] (21 keypoints per hand, left then right); use the release's file"
            )
        image = root / folder / "color" / f"{int(sample_id):05d}.png"
        boxes = {hand: keypoint_box(uv_vis[rows, :2]) for hand, rows in (("left", left_rows), ("right", right_rows))}
        for hand, rows, other in (("left", left_rows, "right"), ("right", right_rows, "left")):
            scaled = scaled_square_box(boxes[hand], IMAGE_SIZE, IMAGE_SIZE)
            side = max(scaled[2] - scaled[0], scaled[3] - scaled[1])
            visible = uv_vis[rows, 2] > 0
            if side <= MIN_BOX_SIDE or visible.sum() <= MIN_VISIBLE:
                continue
            if overlap_fraction(scaled, boxes[other]) >= MAX_OVERLAP:
                continue
            if not collector.records or collector.records[-1].image != image:  # count each image once
                collector.check_image(image)
            collector.add(
                image,
                uv_vis[rows, :2].astype(np.float32),
                visible,
                crop_box_of(scaled),
                split,
                category=hand,
                meta={"sample_id": int(sample_id), "set": folder},
                mirror=hand == "right",
            )

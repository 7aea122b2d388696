"""SURREAL as the Transfer-Learning-Library (TLlib) preprocessed it: person crops + one JSON list per run.

Layout (what TLlib's ``SURREAL`` dataset downloads, and what ``posealign data prepare surreal`` writes)::

    root/<split>/run{0,1,2}/<name>    person crops, one image per sampled frame
    root/<split>/run{k}.json          [{"name", "keypoint2d" (24 x 2), "keypoint3d" (24 x 3),
                                        "intrinsic_matrix" (3 x 3)}, ...]

``split`` is one of ``train``, ``val``, ``test`` (the folder). Keypoints are SMPL's 24 joints, mapped
to Body16 by ``SMPL_TO_BODY16`` (METHOD.md). The renderer labels every joint, so the only occlusion
information is whether a joint lies inside the crop: that is the visibility flag (TLlib marks all 16
visible and lets the heatmap drop joints outside the image, which comes to the same). The images are
already person crops, so the network is fed the whole image, squared by zero padding.

Optional ``width``/``height`` fields per sample (written by ``prepare surreal``) spare reading each
image's header; without them the header is read (PIL reads only the first bytes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posealign.data.records import (
    PoseDataset,
    PoseRecord,
    RecordCollector,
    prepared_crop_size,
    read_json_file,
    whole_crop_in_frame,
)
from posealign.errors import DatasetFormatError
from posealign.keypoints import BODY16

SPLITS = ("train", "val", "test")
SMPL_TO_BODY16 = (7, 4, 1, 2, 5, 8, 0, 9, 12, 15, 20, 18, 13, 14, 19, 21)
NUM_SMPL_JOINTS = 24


def load_surreal(
    root: str | Path,
    split: str = "train",
    runs: tuple[int, ...] | list[int] | None = None,
    check_images: bool = True,
) -> PoseDataset:
    """Read ``root/<split>/run{k}.json`` for each run (every run file present when ``runs`` is None).

    check_images: raise when an image a JSON lists is missing (``posealign data inspect`` turns this
    off and counts them instead).
    """
    root = Path(root)
    if split not in SPLITS:
        raise DatasetFormatError(f"{root}: SURREAL has splits {list(SPLITS)}, not {split!r}; pass one of them")
    if not root.is_dir():
        raise DatasetFormatError(
            f"{root}: folder not found; give the preprocessed SURREAL folder (data.source_root=DIR in the paper "
            "tasks; 'posealign data prepare surreal RAW_DIR DIR' makes one)"
        )
    split_dir = root / split
    if runs is None:
        run_files = sorted(split_dir.glob("run*.json"), key=lambda p: p.stem)
        if not run_files:
            raise DatasetFormatError(
                f"{split_dir}: no run*.json found; download TLlib's preprocessed SURREAL or run "
                f"'posealign data prepare surreal RAW_DIR {root}'"
            )
    else:
        run_files = [split_dir / f"run{k}.json" for k in runs]
        for path in run_files:
            if not path.is_file():
                raise DatasetFormatError(f"{path}: run file not found; pass runs= with the runs you have")

    records: list[PoseRecord] = []
    for path in run_files:
        records.extend(_read_run(path, split, check_images))
    return PoseDataset(name="surreal", root=root, keypoint_set=BODY16, records=records)


def _read_run(path: Path, split: str, check_images: bool) -> list[PoseRecord]:
    samples = read_json_file(path, "re-extract or re-run prepare")
    if not isinstance(samples, list):
        raise DatasetFormatError(
            f"{path}: expected a JSON list of samples, found {type(samples).__name__}; use TLlib's run file layout"
        )
    image_dir = path.with_suffix("")  # root/<split>/run{k}.json -> root/<split>/run{k}/
    collector = RecordCollector()
    for index, sample in enumerate(samples):
        if not isinstance(sample, dict) or "name" not in sample or "keypoint2d" not in sample:
            raise DatasetFormatError(f"{path}: sample {index} lacks 'name' or 'keypoint2d'; each sample needs both")
        joints = np.asarray(sample["keypoint2d"], dtype=np.float32)
        if joints.shape != (NUM_SMPL_JOINTS, 2):
            raise DatasetFormatError(
                f"{path}: sample {index} ({sample['name']}) has keypoint2d of shape {list(joints.shape)}, "
                f"expected [24, 2] (SMPL joints); regenerate the file"
            )
        image = image_dir / sample["name"]
        keypoints = joints[list(SMPL_TO_BODY16)]
        exists = collector.check_image(image)
        visible, crop_box = whole_crop_in_frame(keypoints, prepared_crop_size(sample, image, exists))
        meta = {"run": image_dir.name, "name": sample["name"]}
        if "keypoint3d" in sample:
            joints3d = np.asarray(sample["keypoint3d"], dtype=np.float32)
            if joints3d.shape == (NUM_SMPL_JOINTS, 3):
                meta["keypoint3d"] = joints3d[list(SMPL_TO_BODY16)]
        if "intrinsic_matrix" in sample:
            meta["intrinsic_matrix"] = np.asarray(sample["intrinsic_matrix"], dtype=np.float32)
        collector.add(image, keypoints, visible, crop_box, split, meta=meta)
    return collector.checked_records(
        check_images,
        lambda missing: (
            f"{path}: {len(missing)} listed image(s) missing, first {missing[0]}; "
            f"re-extract {image_dir.name} or re-run prepare"
        ),
    )

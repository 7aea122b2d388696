"""Human3.6M as the domain-adaptation anchors read it: cached person crops + one JSON list per subject.

Layout (what RegDA's and UDAPE's ``Human36M`` dataset reads, and what ``posealign data prepare
human36m`` writes from the parsed release; see ``prepare_human36m``)::

    root/crop_images/<file_name>               512 x 512 person crops, file names as in the release
    root/annotations/keypoints2d_{subject}.json
        [{"name", "keypoint2d" (16 x 2, crop pixels, Body16 order), "keypoint3d" (16 x 3),
          "intrinsic_matrix" (3 x 3)}, ...]

Splits (the anchors' rule): ``train`` = subjects 1, 5, 6, 7, 8; ``test`` = subjects 9, 11; ``all`` =
both. The subjects' samples are concatenated in that order, each file in its own order. The test
split is then ``random.seed(42); random.choices(samples, k=3200)``: 3200 draws *with replacement*,
so a test sample can appear more than once, as in the anchors' test set (``test_count=None``
keeps every test sample once instead).

The keypoints are already Body16 (the crop cache maps Human3.6M's 17 joints, see
``prepare_human36m``). Every joint is labeled; a joint counts as visible when it lies inside the
crop (the anchors mark all 16 visible and let the heatmap drop joints outside the image, which comes
to the same). The anchors feed the whole cached crop to the network (``Resize(image_size)``), so the
crop box is the whole image.

Optional ``width``/``height`` fields per sample (written by ``prepare human36m``) spare reading each
image's header.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from posealign.data.records import (
    PoseDataset,
    RecordCollector,
    prepared_crop_size,
    read_json_file,
    whole_crop_in_frame,
)
from posealign.errors import DatasetFormatError
from posealign.keypoints import BODY16

TRAIN_SUBJECTS = (1, 5, 6, 7, 8)
TEST_SUBJECTS = (9, 11)
SPLIT_SUBJECTS = {"train": TRAIN_SUBJECTS, "test": TEST_SUBJECTS, "all": TRAIN_SUBJECTS + TEST_SUBJECTS}
TEST_SEED = 42
TEST_COUNT = 3200


def load_human36m(
    root: str | Path,
    split: str = "train",
    test_count: int | None = TEST_COUNT,
    check_images: bool = True,
) -> PoseDataset:
    """Read ``root/annotations/keypoints2d_{s}.json`` for the split's subjects; see the module docstring.

    test_count: how many samples the ``test`` split draws (with replacement, seed 42); None keeps
    every test sample once. check_images: raise when a listed crop is missing (``posealign data
    inspect`` turns this off and counts them instead).
    """
    root = Path(root)
    if split not in SPLIT_SUBJECTS:
        raise DatasetFormatError(f"{root}: Human3.6M has splits {list(SPLIT_SUBJECTS)}, not {split!r}; pass one")
    if test_count is not None and (not isinstance(test_count, int) or test_count < 1):
        raise DatasetFormatError(f"{root}: test_count must be a positive integer or null, not {test_count!r}")
    if not root.is_dir():
        raise DatasetFormatError(
            f"{root}: folder not found; give the prepared Human3.6M folder (data.target_root=DIR in the paper "
            "task; 'posealign data prepare human36m RAW_DIR DIR' makes one)"
        )
    samples: list[tuple[Path, int, dict]] = []
    for subject in SPLIT_SUBJECTS[split]:
        path = root / "annotations" / f"keypoints2d_{subject}.json"
        samples.extend((path, index, sample) for index, sample in enumerate(_read_subject(path, root)))
    if split == "test" and test_count is not None:
        samples = random.Random(TEST_SEED).choices(samples, k=test_count)

    collector = RecordCollector()
    for path, index, sample in samples:
        _add_record(collector, root, path, index, sample, split)
    records = collector.checked_records(
        check_images,
        lambda missing: (
            f"{root / 'crop_images'}: {len(missing)} listed crop(s) missing, first {missing[0]}; "
            f"re-run 'posealign data prepare human36m RAW_DIR {root}' after deleting the subject's keypoints2d file"
        ),
    )
    return PoseDataset(name="human36m", root=root, keypoint_set=BODY16, records=records)


def _read_subject(path: Path, root: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetFormatError(
            f"{path}: not found; run 'posealign data prepare human36m RAW_DIR {root}' on the parsed "
            f"Human3.6M release (annotations/ + images/)"
        )
    samples = read_json_file(path, "delete it and re-run 'posealign data prepare human36m'")
    if not isinstance(samples, list):
        raise DatasetFormatError(
            f"{path}: expected a JSON list of samples, found {type(samples).__name__}; use the anchors' keypoints2d layout"
        )
    return samples


def _add_record(collector: RecordCollector, root: Path, path: Path, index: int, sample: object, split: str) -> None:
    if not isinstance(sample, dict) or "name" not in sample or "keypoint2d" not in sample:
        raise DatasetFormatError(f"{path}: sample {index} lacks 'name' or 'keypoint2d'; each sample needs both")
    keypoints = np.asarray(sample["keypoint2d"], dtype=np.float32)
    if keypoints.shape != (BODY16.num_keypoints, 2):
        raise DatasetFormatError(
            f"{path}: sample {index} ({sample['name']}) has keypoint2d of shape {list(keypoints.shape)}, "
            f"expected [16, 2] (Body16); delete the file and re-run 'posealign data prepare human36m'"
        )
    image = root / "crop_images" / sample["name"]
    exists = collector.check_image(image)
    visible, crop_box = whole_crop_in_frame(keypoints, prepared_crop_size(sample, image, exists))
    meta = {"subject_file": path.name, "name": sample["name"]}
    for key, shape in (("keypoint3d", (16, 3)), ("intrinsic_matrix", (3, 3))):
        if key in sample and np.shape(sample[key]) == shape:
            meta[key] = np.asarray(sample[key], dtype=np.float32)
    collector.add(image, keypoints, visible, crop_box, split, meta=meta)

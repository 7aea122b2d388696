"""Leeds Sports Pose (LSP), and LSP-extended, as released: ``images/`` plus one ``joints.mat``.

Layout::

    root/images/im0001.jpg ... im2000.jpg    (LSP-extended: im00001.jpg ... im10000.jpg)
    root/joints.mat                          variable ``joints``

Which ``joints`` layout means what (the rule, checked in this order):

- ``3 x 14 x N`` (LSP as MATLAB saves it): rows x, y, flag; the flag marks an *occluded* joint, so
  visible = 1 - flag (METHOD.md).
- ``14 x 3 x N`` (LSP-extended as released) or ``N x 14 x 3`` (the same, transposed by a Python
  tool): columns x, y, flag; LSP-extended's flag marks a *visible* joint.
- ``flag="occluded"`` / ``flag="visible"`` overrides the reading of the flag for any layout.

Images are named ``im{i:04d}.jpg`` (1-based), with more digits when N needs them (LSP-extended).
LSP's 14 joints map to Body16 by ``LSP_TO_BODY16``; LSP has no pelvis and no thorax, so those two
Body16 keypoints are copies of the head top marked invisible.

Splits. ``protocol="uda"`` (default; the domain-adaptation papers, METHOD.md): every split is all
images (LSP is the unlabeled target and the test set at once). ``protocol="standard"``: the customary
supervised split, ``train`` = the first ``train_count`` (1000) images, ``test`` = the rest;
``all`` is every image under either protocol.

The network is fed the whole image, aspect kept and zero padded: a square crop box around the image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posealign.data.records import PoseDataset, RecordCollector, read_matlab_file, square_box_around
from posealign.errors import DatasetFormatError
from posealign.image_crops import read_image_size
from posealign.keypoints import BODY16

SPLITS = ("train", "test", "all")
PROTOCOLS = ("uda", "standard")
LSP_TO_BODY16 = (0, 1, 2, 3, 4, 5, 13, 13, 12, 13, 6, 7, 8, 9, 10, 11)
BODY16_NOT_IN_LSP = (6, 7)  # pelvis, thorax
NUM_LSP_JOINTS = 14


def load_lsp(
    root: str | Path,
    split: str = "all",
    protocol: str = "uda",
    train_count: int = 1000,
    flag: str = "auto",
    check_images: bool = True,
) -> PoseDataset:
    """Read ``root/joints.mat`` and ``root/images``; see the module docstring for layouts and splits."""
    root = Path(root)
    if split not in SPLITS:
        raise DatasetFormatError(f"{root}: LSP has splits {list(SPLITS)}, not {split!r}; pass one of them")
    if protocol not in PROTOCOLS:
        raise DatasetFormatError(f"{root}: LSP protocol must be one of {list(PROTOCOLS)}, not {protocol!r}")
    if flag not in ("auto", "occluded", "visible"):
        raise DatasetFormatError(f"{root}: flag must be 'auto', 'occluded' or 'visible', not {flag!r}")
    path = root / "joints.mat"
    joints, flag_means = read_lsp_joints(path)
    if flag != "auto":
        flag_means = flag
    count = len(joints)
    if protocol == "standard" and split == "train":
        indices = range(min(train_count, count))
    elif protocol == "standard" and split == "test":
        indices = range(min(train_count, count), count)
    else:
        indices = range(count)

    digits = max(4, len(str(count)))
    collector = RecordCollector()
    for i in indices:
        image = root / "images" / f"im{i + 1:0{digits}d}.jpg"
        keypoints = joints[i, list(LSP_TO_BODY16), :2].astype(np.float32)
        flags = joints[i, list(LSP_TO_BODY16), 2] > 0.5
        visible = ~flags if flag_means == "occluded" else flags
        visible[list(BODY16_NOT_IN_LSP)] = False
        if collector.check_image(image):
            width, height = read_image_size(image)
            crop_box = square_box_around(0, 0, width, height)
        else:
            crop_box = square_box_around(*keypoints.min(0), *keypoints.max(0), scale=1.25)
        collector.add(image, keypoints, visible, crop_box, split, meta={"index": i})
    records = collector.checked_records(
        check_images,
        lambda missing: (
            f"{path}: lists {count} images but {len(missing)} are missing from {root / 'images'}, "
            f"first {missing[0].name}; extract the images next to joints.mat"
        ),
    )
    return PoseDataset(name="lsp", root=root, keypoint_set=BODY16, records=records)


def read_lsp_joints(path: Path) -> tuple[np.ndarray, str]:
    """``joints.mat`` -> (N, 14, 3) array of x, y, flag and what the flag means ('occluded'/'visible')."""
    if not path.is_file():
        raise DatasetFormatError(f"{path}: not found; put LSP's joints.mat at the dataset root next to images/")
    mat = read_matlab_file(path, "re-download joints.mat")
    if "joints" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetFormatError(f"{path}: no variable 'joints' (found {found}); use LSP's joints.mat")
    array = np.asarray(mat["joints"], dtype=np.float64)
    if array.ndim == 2:  # MATLAB drops a trailing singleton dimension: one image
        array = array[:, :, None]
    if array.ndim == 3 and array.shape[:2] == (3, NUM_LSP_JOINTS):
        return array.transpose(2, 1, 0), "occluded"
    if array.ndim == 3 and array.shape[:2] == (NUM_LSP_JOINTS, 3):
        return array.transpose(2, 0, 1), "visible"
    if array.ndim == 3 and array.shape[1:] == (NUM_LSP_JOINTS, 3):
        return array, "visible"
    raise DatasetFormatError(
        f"{path}: 'joints' has shape {list(array.shape)}, expected 3 x 14 x N (LSP) or 14 x 3 x N / "
        f"N x 14 x 3 (LSP-extended); use the released joints.mat"
    )

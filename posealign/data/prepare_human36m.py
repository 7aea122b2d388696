"""Cache the Human3.6M person crops the anchors train on, from the parsed release's JSON and frames.

Input (the parsed Human3.6M release the anchors read; ``raw_dir``)::

    raw_dir/annotations/Human36M_subject{s}_data.json      {"images": [{"file_name", "action_idx",
                                                             "subaction_idx", "frame_idx", "cam_idx", ...}]}
    raw_dir/annotations/Human36M_subject{s}_camera.json    {cam_idx: {"R" 3x3, "t" 3, "f" 2, "c" 2}}
    raw_dir/annotations/Human36M_subject{s}_joint_3d.json  {action: {subaction: {frame: 17 x 3 world}}}
    raw_dir/images/<file_name>                              the frames

Output (what ``load_human36m`` reads; ``out_dir`` may be ``raw_dir``, which is the anchors' layout)::

    out_dir/crop_images/<file_name>                512 x 512 crops
    out_dir/annotations/keypoints2d_{s}.json       [{name, keypoint2d, keypoint3d, intrinsic_matrix,
                                                     width, height}, ...]

The rules are RegDA's / UDAPE's ``Human36M.preprocess``:

- every 5th entry of the subject's ``images`` list (list index ``i % 5 == 0``, whatever its frame);
- Human3.6M's 17 joints to Body16 by ``H36M_TO_BODY16``, then the thorax (Body16 7) replaced by the
  midpoint of the two shoulders; projected with the camera: ``X_c = R X + t``, ``u = K X_c / Z``;
- the crop: the keypoints' box, made square with side ``round(1.5 x its longer side)`` (at most the
  frame's shorter side) around its centre, shifted back inside the frame where it sticks out
  (``scale_box``), cut out, resized to 512 x 512 (bicubic, Pillow's default) and saved with
  Pillow's default JPEG settings; ``keypoint2d`` follows the crop and the resize.

``keypoint3d`` is the joints in camera coordinates (mm) and ``intrinsic_matrix`` the crop's camera
(focal and principal point moved by the crop and scaled by the resize). The anchors' cached files
keep the frame's principal point unshifted and recompute ``keypoint3d`` from it, which misplaces
both; neither enters 2D training or PCK.

Resumable per subject: a subject whose ``keypoints2d_{s}.json`` exists is skipped; that file is
written (atomically) only after all its crops, so an interrupted subject is redone whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from posealign.data.human36m import TEST_SUBJECTS, TRAIN_SUBJECTS
from posealign.data.records import read_json_file
from posealign.errors import DatasetFormatError
from posealign.files import atomic_write_json
from posealign.image_crops import read_rgb_image

SUBJECTS = TRAIN_SUBJECTS + TEST_SUBJECTS
H36M_TO_BODY16 = (3, 2, 1, 4, 5, 6, 0, 11, 8, 10, 16, 15, 14, 11, 12, 13)
THORAX, RIGHT_SHOULDER, LEFT_SHOULDER = 7, 12, 13  # Body16 indices
NUM_H36M_JOINTS = 17
FRAME_STRIDE = 5
CROP_SCALE = 1.5
CROP_SIZE = 512


@dataclass
class PrepareReport:
    subjects: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    frames: int = 0
    annotation_files: list[str] = field(default_factory=list)


def prepare_human36m(
    raw_dir: str | Path, out_dir: str | Path, subjects: tuple[int, ...] | list[int] = SUBJECTS, progress: bool = True
) -> PrepareReport:
    """Write the crops and ``keypoints2d_{s}.json`` of each subject not prepared yet."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    unknown = sorted(set(subjects) - set(SUBJECTS))
    if unknown:
        raise DatasetFormatError(f"{raw_dir}: no Human3.6M subject {unknown}; the subjects are {list(SUBJECTS)}")
    if not (raw_dir / "annotations").is_dir():
        raise DatasetFormatError(
            f"{raw_dir / 'annotations'}: not found; point RAW_DIR at the parsed Human3.6M release "
            "(annotations/Human36M_subject*_*.json and images/)"
        )
    report = PrepareReport()
    for subject in subjects:
        target = out_dir / "annotations" / f"keypoints2d_{subject}.json"
        if target.is_file():
            report.skipped.append(subject)
            continue
        samples = prepare_subject(raw_dir, out_dir, subject, progress)
        atomic_write_json(target, samples, indent=None)
        report.subjects.append(subject)
        report.frames += len(samples)
        report.annotation_files.append(str(target))
    return report


def prepare_subject(raw_dir: Path, out_dir: Path, subject: int, progress: bool = True) -> list[dict]:
    """Crop every 5th listed frame of one subject into ``out_dir/crop_images``; returns its samples."""
    annotations = raw_dir / "annotations"
    data_path = annotations / f"Human36M_subject{subject}_data.json"
    camera_path = annotations / f"Human36M_subject{subject}_camera.json"
    joints_path = annotations / f"Human36M_subject{subject}_joint_3d.json"
    images = _read_images_list(data_path)
    cameras = _read_object(camera_path)
    joints = _read_object(joints_path)
    samples = []
    listed = tqdm(images, unit="frame", desc=f"subject {subject}", disable=not progress)
    for i, entry in enumerate(listed):
        if i % FRAME_STRIDE:
            continue
        name = entry["file_name"]
        world = _joints_of(joints, entry, joints_path)
        rotation, translation, intrinsic = _camera_of(cameras, entry, camera_path)
        camera_points = body16_joints(world) @ rotation.T + translation
        keypoints = camera_points @ intrinsic.T
        keypoints = keypoints[:, :2] / keypoints[:, 2:3]
        source = raw_dir / "images" / name
        frame = read_rgb_image(
            source,
            missing_fix=f"it is listed in {data_path.name}; extract images/ fully",
            broken_fix="re-extract this frame",
            error=DatasetFormatError,
        )
        left, upper, right, lower = anchor_crop_box(keypoints, *frame.size)
        crop = frame.crop((left, upper, right + 1, lower + 1))
        side = crop.width
        crop = crop.resize((CROP_SIZE, CROP_SIZE), Image.Resampling.BICUBIC)
        destination = out_dir / "crop_images" / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        crop.save(destination)
        zoom = side / CROP_SIZE
        crop_intrinsic = intrinsic.copy()
        crop_intrinsic[:2, 2] -= (left, upper)
        crop_intrinsic[:2] /= zoom
        samples.append(
            {
                "name": name,
                "keypoint2d": ((keypoints - (left, upper)) / zoom).tolist(),
                "keypoint3d": camera_points.tolist(),
                "intrinsic_matrix": crop_intrinsic.tolist(),
                "width": CROP_SIZE,
                "height": CROP_SIZE,
            }
        )
    return samples


def body16_joints(joints17: np.ndarray) -> np.ndarray:
    """Human3.6M's 17 joints (any trailing dimension) in Body16 order, thorax = mid-shoulders."""
    body = np.array(joints17, dtype=np.float64)[list(H36M_TO_BODY16)]
    body[THORAX] = 0.5 * (body[RIGHT_SHOULDER] + body[LEFT_SHOULDER])
    return body


def anchor_crop_box(keypoints: np.ndarray, width: int, height: int, scale: float = CROP_SCALE) -> tuple[int, ...]:
    """The anchors' ``scale_box(get_bounding_box(keypoints), width, height, scale)``: an inclusive
    (left, upper, right, lower) square, inside the frame. Python's ``round`` (halves to even) as theirs."""
    x0, y0 = (float(v) for v in keypoints.min(0))
    x1, y1 = (float(v) for v in keypoints.max(0))
    center_x, center_y = (x0 + x1) / 2, (y0 + y1) / 2
    side = min(round(scale * max(x1 - x0, y1 - y0)), min(width, height))
    left = round(center_x - side / 2)
    upper = round(center_y - side / 2)
    left = min(max(left, 0), width - side)
    upper = min(max(upper, 0), height - side)
    return left, upper, left + side - 1, upper + side - 1


def _read_object(path: Path) -> dict:
    if not path.is_file():
        raise DatasetFormatError(f"{path}: not found; every subject needs its _data, _camera and _joint_3d JSON")
    payload = read_json_file(path, "re-download the Human3.6M annotations")
    if not isinstance(payload, dict):
        raise DatasetFormatError(
            f"{path}: expected a JSON object, found {type(payload).__name__}; use the release's file"
        )
    return payload


def _read_images_list(path: Path) -> list[dict]:
    images = _read_object(path).get("images")
    if not isinstance(images, list):
        raise DatasetFormatError(f"{path}: no 'images' list; use the release's Human36M_subject*_data.json")
    for index, entry in enumerate(images):
        keys = ("file_name", "action_idx", "subaction_idx", "frame_idx", "cam_idx")
        if not isinstance(entry, dict) or any(key not in entry for key in keys):
            raise DatasetFormatError(f"{path}: images[{index}] lacks one of {list(keys)}; use the release's file")
    return images


def _joints_of(joints: dict, entry: dict, path: Path) -> np.ndarray:
    keys = [str(entry[k]) for k in ("action_idx", "subaction_idx", "frame_idx")]
    try:
        world = joints[keys[0]][keys[1]][keys[2]]
    except (KeyError, TypeError):
        raise DatasetFormatError(
            f"{path}: no joints for action {keys[0]}, subaction {keys[1]}, frame {keys[2]} "
            f"({entry['file_name']}); use the joint file of the same release as the _data file"
        ) from None
    world = np.asarray(world, dtype=np.float64)
    if world.shape != (NUM_H36M_JOINTS, 3):
        raise DatasetFormatError(
            f"{path}: joints of action {keys[0]}, subaction {keys[1]}, frame {keys[2]} have shape "
            f"{list(world.shape)}, expected [17, 3] (Human3.6M's 17 joints); use the release's file"
        )
    return world


def _camera_of(cameras: dict, entry: dict, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    camera = cameras.get(str(entry["cam_idx"]))
    try:
        rotation = np.asarray(camera["R"], dtype=np.float64).reshape(3, 3)
        translation = np.asarray(camera["t"], dtype=np.float64).reshape(3)
        focal = np.asarray(camera["f"], dtype=np.float64).reshape(2)
        center = np.asarray(camera["c"], dtype=np.float64).reshape(2)
    except (KeyError, TypeError, ValueError):
        raise DatasetFormatError(
            f"{path}: camera {entry['cam_idx']} missing or lacking R (3x3), t (3), f (2), c (2); "
            "use the release's camera file"
        ) from None
    intrinsic = np.array([[focal[0], 0.0, center[0]], [0.0, focal[1], center[1]], [0.0, 0.0, 1.0]])
    return rotation, translation, intrinsic

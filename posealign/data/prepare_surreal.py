"""Turn the raw SURREAL release into the Transfer-Learning-Library layout that ``load_surreal`` reads.

Raw layout (SURREAL's ``cmu`` folder; ``raw_dir`` may also be the folder holding ``cmu``)::

    raw_dir/<split>/run{k}/<sequence>/<clip>.mp4         320 x 240 video
    raw_dir/<split>/run{k}/<sequence>/<clip>_info.mat    joints2D 2 x 24 x T (pixels),
                                                         joints3D 3 x 24 x T (world), camLoc 3 x 1

Output::

    out_dir/<split>/run{k}/<clip>_f{frame:04d}.jpg       person crops
    out_dir/<split>/run{k}.json                          [{name, keypoint2d, keypoint3d, intrinsic_matrix,
                                                           width, height}, ...]

Every ``stride``-th frame is kept if at least ``min_joints_inside`` of its 24 joints lie in the
frame. The crop is a square of ``enlarge`` x the longer side of the joints' box, around its centre;
parts outside the frame are black. ``keypoint2d`` is in crop pixels; ``intrinsic_matrix`` is the
crop's (SURREAL's Blender camera: focal 60 mm on a 32 mm sensor, principal point at the frame
centre, i.e. f = 600 px at 320 x 240); ``keypoint3d`` is in camera coordinates, from ``joints3D``
and ``camLoc`` with SURREAL's fixed camera rotation (zeros when the info file lacks them).
``width``/``height`` are extra fields that spare the loader reading image headers.

Resumable: once a clip's frames are written, ``out_dir/<split>/run{k}/.clips/<clip>.json`` records
its samples (written atomically); a clip with a record is skipped. ``run{k}.json`` gathers the
records and is rewritten (atomically) only when a clip was added or it is missing, so a second run
over finished data writes nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image
from tqdm import tqdm

from posealign.data.records import read_matlab_file, square_box_around
from posealign.errors import DatasetFormatError
from posealign.files import atomic_write_json

SPLITS = ("train", "val", "test")
NUM_JOINTS = 24
FOCAL_MM, SENSOR_WIDTH_MM = 60.0, 32.0


@dataclass
class PrepareReport:
    clips: int = 0
    converted: int = 0
    skipped: int = 0
    frames: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    run_files: list[str] = field(default_factory=list)


def prepare_surreal(
    raw_dir: str | Path,
    out_dir: str | Path,
    stride: int = 10,
    split: str | None = None,
    enlarge: float = 1.5,
    size: int | None = None,
    image_format: str = "jpg",
    min_joints_inside: int = 12,
    progress: bool = True,
) -> PrepareReport:
    """Convert every clip of ``split`` (all splits present when None); returns what was done."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if stride < 1:
        raise DatasetFormatError(f"{raw_dir}: stride must be at least 1, not {stride}")
    if image_format not in ("jpg", "png"):
        raise DatasetFormatError(f"{raw_dir}: image format must be 'jpg' or 'png', not {image_format!r}")
    if not raw_dir.is_dir():
        raise DatasetFormatError(f"{raw_dir}: not a folder; point RAW_DIR at SURREAL's cmu folder")
    if not any((raw_dir / s).is_dir() for s in SPLITS) and (raw_dir / "cmu").is_dir():
        raw_dir = raw_dir / "cmu"
    splits = [split] if split else [s for s in SPLITS if (raw_dir / s).is_dir()]
    groups: dict[tuple[str, str], list[Path]] = {}
    for name in splits:
        for run_dir in sorted(p for p in (raw_dir / name).glob("run*") if p.is_dir()):
            groups[(name, run_dir.name)] = sorted(run_dir.rglob("*.mp4"))
    report = PrepareReport(clips=sum(len(clips) for clips in groups.values()))
    if report.clips == 0:
        raise DatasetFormatError(
            f"{raw_dir}: no clips found under {'/'.join(splits) or '<split>'}/run*/<sequence>/*.mp4; "
            f"point RAW_DIR at SURREAL's cmu folder"
        )
    _check_same_settings(
        out_dir,
        {
            "stride": stride,
            "enlarge": enlarge,
            "size": size,
            "format": image_format,
            "min_joints_inside": min_joints_inside,
        },
    )
    with tqdm(total=report.clips, unit="clip", disable=not progress) as bar:
        for (name, run), clips in groups.items():
            image_dir = out_dir / name / run
            state_dir = image_dir / ".clips"
            state_dir.mkdir(parents=True, exist_ok=True)
            added = False
            for clip in clips:
                bar.update(1)
                record = state_dir / f"{clip.stem}.json"
                if record.is_file():
                    report.skipped += 1
                    continue
                try:
                    samples = convert_clip(clip, image_dir, stride, enlarge, size, image_format, min_joints_inside)
                except (DatasetFormatError, OSError, RuntimeError, ValueError) as error:
                    report.failed.append((str(clip), " ".join(str(error).split())))
                    continue
                atomic_write_json(record, samples, indent=None)
                report.converted += 1
                report.frames += len(samples)
                added = True
            run_file = out_dir / name / f"{run}.json"
            if added or not run_file.is_file():
                samples = [s for path in sorted(state_dir.glob("*.json")) for s in json.loads(path.read_text())]
                atomic_write_json(run_file, samples, indent=None)
                report.run_files.append(str(run_file))
    return report


def _check_same_settings(out_dir: Path, settings: dict) -> None:
    """Record the conversion settings in ``out_dir/prepare.json``; an output made with other settings
    is refused (its converted clips would be skipped as done and the mix would go unnoticed)."""
    record = out_dir / "prepare.json"
    if record.is_file():
        try:
            previous = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous is not None and previous != settings:
            changed = ", ".join(
                f"--{key.replace('_', '-')} {previous.get(key)} -> {value}"
                for key, value in settings.items()
                if previous.get(key) != value
            )
            raise DatasetFormatError(
                f"{out_dir}: was prepared with other settings ({changed}); choose another OUT_DIR or delete it"
            )
    elif any(out_dir.glob("*/run*/.clips/*.json")):
        return  # prepared before settings were recorded: keep resuming it as before
    atomic_write_json(record, settings)


def convert_clip(
    video: Path,
    image_dir: Path,
    stride: int = 10,
    enlarge: float = 1.5,
    size: int | None = None,
    image_format: str = "jpg",
    min_joints_inside: int = 12,
) -> list[dict]:
    """Write the crops of one clip into ``image_dir``; returns its TLlib samples."""
    info_path = video.with_name(f"{video.stem}_info.mat")
    joints2d, joints3d, camera_location = read_clip_info(info_path)
    if joints3d is not None and camera_location is not None:
        rotation, translation = surreal_world_to_camera(camera_location)
    image_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for t, frame in enumerate(iio.imiter(video, plugin="FFMPEG")):
        if t >= joints2d.shape[2]:
            break
        if t % stride:
            continue
        height, width = frame.shape[:2]
        joints = joints2d[:, :, t].T  # (24, 2)
        inside = (joints[:, 0] >= 0) & (joints[:, 0] < width) & (joints[:, 1] >= 0) & (joints[:, 1] < height)
        if inside.sum() < min_joints_inside:
            continue
        box_x, box_y, side, _ = square_box_around(*joints.min(0), *joints.max(0), scale=enlarge)
        x0, y0, side_px = math.floor(box_x), math.floor(box_y), math.ceil(side)
        crop = Image.fromarray(frame[:, :, :3]).crop((x0, y0, x0 + side_px, y0 + side_px))  # black outside
        scale = 1.0
        if size is not None:
            crop = crop.resize((size, size), Image.Resampling.BILINEAR)
            scale = size / side_px
        name = f"{video.stem}_f{t:04d}.{image_format}"
        if image_format == "jpg":
            crop.save(image_dir / name, quality=95)
        else:
            crop.save(image_dir / name)
        focal = FOCAL_MM * width / SENSOR_WIDTH_MM
        intrinsic = [
            [scale * focal, 0.0, scale * (width / 2 - x0)],
            [0.0, scale * focal, scale * (height / 2 - y0)],
            [0.0, 0.0, 1.0],
        ]
        if joints3d is not None and camera_location is not None:
            camera_points = (rotation @ joints3d[:, :, t] + translation[:, None]).T
        else:
            camera_points = np.zeros((NUM_JOINTS, 3))
        samples.append(
            {
                "name": name,
                "keypoint2d": np.round((joints - [x0, y0]) * scale, 3).tolist(),
                "keypoint3d": np.round(camera_points, 5).tolist(),
                "intrinsic_matrix": np.round(intrinsic, 4).tolist(),
                "width": crop.width,
                "height": crop.height,
            }
        )
    return samples


def read_clip_info(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``<clip>_info.mat`` -> joints2D (2, 24, T), joints3D (3, 24, T) or None, camLoc (3,) or None."""
    if not path.is_file():
        raise DatasetFormatError(f"{path}: not found; every SURREAL clip needs its _info.mat next to the .mp4")
    mat = read_matlab_file(path, "re-download the clip", variable_names=["joints2D", "joints3D", "camLoc"])
    if "joints2D" not in mat:
        raise DatasetFormatError(f"{path}: no 'joints2D'; use SURREAL's _info.mat files")
    joints2d = _per_frame(np.asarray(mat["joints2D"], dtype=np.float64), 2)
    if joints2d is None:
        raise DatasetFormatError(f"{path}: joints2D has shape {list(np.shape(mat['joints2D']))}, expected 2 x 24 x T")
    joints3d = _per_frame(np.asarray(mat["joints3D"], dtype=np.float64), 3) if "joints3D" in mat else None
    camera_location = None
    if "camLoc" in mat and np.size(mat["camLoc"]) == 3:
        camera_location = np.asarray(mat["camLoc"], dtype=np.float64).reshape(3)
    return joints2d, joints3d, camera_location


def _per_frame(array: np.ndarray, rows: int) -> np.ndarray | None:
    if array.ndim == 2:  # MATLAB drops a trailing singleton dimension: a one-frame clip
        array = array[:, :, None]
    return array if array.ndim == 3 and array.shape[:2] == (rows, NUM_JOINTS) else None


def surreal_world_to_camera(camera_location: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SURREAL's extrinsic: world -> computer-vision camera (x right, y down, z forward) for ``camLoc``."""
    world_to_blender = np.array([[0, 0, 1], [0, -1, 0], [-1, 0, 0]], dtype=np.float64).T
    blender_to_cv = np.diag([1.0, -1.0, -1.0])
    rotation = blender_to_cv @ world_to_blender
    translation = blender_to_cv @ (-world_to_blender @ camera_location)
    return rotation, translation

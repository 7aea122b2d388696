"""``posealign predict`` on one video: every frame through the model in batches, written as

- ``OUT/videos/<name>.predictions.json``: posealign's COCO keypoint results, one per frame with a
  pose, ``image_id`` = the frame index (0-based) and ``file_name`` = the video;
- ``OUT/videos/<name>.csv``: the DeepLabCut-style table (:mod:`posealign.deeplabcut_table`);
- ``OUT/videos/<name>.overlay.mp4`` with ``--overlay``: each frame with its pose drawn, at the
  video's frame rate (small videos enlarged as the image overlays are).

``<name>`` is the video's file name without suffix (``clip``; with its folders, ``day1__clip``, when
two videos given share a file name). The three
files are written under temporary names and renamed once the whole video has been read, so a
truncated video (found only when decoding reaches its end) leaves the earlier files as they were.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from posealign.cli.predict_inputs import ImageInput
from posealign.cli.predict_outputs import coco_result, draw_overlay, overlay_names
from posealign.cli.predict_video_inputs import VideoInput
from posealign.deeplabcut_table import write_deeplabcut_csv
from posealign.files import atomic_write_json
from posealign.inference import predict_images
from posealign.pose_model_files import PoseModel
from posealign.video_io import VideoWriter, read_video_frames

VIDEO_FOLDER = "videos"
SCORER = "posealign"  # the table's scorer row, as DeepLabCut writes its network's name there


def video_output_names(videos: list[VideoInput]) -> list[str]:
    """The ``<name>`` of each video's outputs: the video's file name without suffix (``clip``), or,
    where two videos share one, its path as the image overlays are named (``day1__clip``, ``day2__clip``)."""
    stems = [Path(video.file_name).stem for video in videos]
    full = [Path(name).stem for name in overlay_names([ImageInput(Path(v.file_name), v.file_name, 0) for v in videos])]
    return [stem if stems.count(stem) == 1 else path_name for stem, path_name in zip(stems, full, strict=True)]


def predict_video(
    model: PoseModel,
    video: VideoInput,
    out: Path,
    name: str,
    batch_size: int,
    kpt_thr: float,
    overlay: bool,
    mirror: bool = False,
) -> tuple[int, float]:
    """Predict every frame of ``video`` and write its outputs as ``out/videos/<name>.*``; returns
    (frames, seconds taken)."""
    from tqdm import tqdm

    info, keypoint_set = video.info, model.keypoint_set
    folder = out / VIDEO_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    overlay_path = folder / f"{name}.overlay.mp4"
    overlay_temporary = folder / f".{name}.overlay.mp4.tmp"
    writer: VideoWriter | None = None
    keypoints: list[np.ndarray] = []  # per frame (K, 2), NaN without a pose
    likelihood: list[np.ndarray] = []
    results: list[dict] = []
    missing = np.full((keypoint_set.num_keypoints, 2), np.nan, np.float32)
    cropped = video.box is not None or video.frame_boxes is not None  # else the whole frame
    started = time.perf_counter()
    try:
        with tqdm(total=info.frames, unit="frames", desc=video.file_name, disable=None, dynamic_ncols=True) as bar:
            for batch in _batches(read_video_frames(info), batch_size):
                first = len(keypoints)
                images = [Image.fromarray(pixels) for pixels in batch]
                boxes = None if not cropped else [video.boxes_of(first + i) for i in range(len(batch))]
                poses = predict_images(
                    model.network,
                    images,
                    boxes,
                    model.preprocessing.image_size,
                    batch_size,
                    model.preprocessing.box_scale,
                    mirror,
                )
                for i, (image, frame_poses) in enumerate(zip(images, poses, strict=True)):
                    keypoints.append(frame_poses[0].keypoints if frame_poses else missing)
                    likelihood.append(frame_poses[0].confidence if frame_poses else missing[:, 0])
                    results += [coco_result(ImageInput(info.path, video.file_name, first + i), p) for p in frame_poses]
                    if overlay:
                        drawn = np.asarray(draw_overlay(image, frame_poses, keypoint_set, cropped, kpt_thr))
                        if writer is None:
                            writer = VideoWriter(overlay_temporary, drawn.shape[1], drawn.shape[0], info.fps)
                        writer.write(drawn)
                bar.update(len(batch))
        if writer is not None:
            writer.close()
            writer = None
        write_deeplabcut_csv(
            folder / f"{name}.csv",
            SCORER,
            keypoint_set.names,
            np.stack(keypoints).astype(np.float32),
            np.stack(likelihood).astype(np.float32),
        )
        atomic_write_json(folder / f"{name}.predictions.json", results, indent=1)
        if overlay:
            os.replace(overlay_temporary, overlay_path)
    finally:
        if writer is not None:
            writer.abort()
        overlay_temporary.unlink(missing_ok=True)
    return len(keypoints), time.perf_counter() - started


def _batches(frames, size: int):
    """Lists of ``size`` consecutive frames, the last one shorter."""
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

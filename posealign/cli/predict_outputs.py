"""What ``posealign predict`` writes into its output folder, and the lock that keeps two models apart.

``OUT/predictions.json`` (COCO keypoint results), ``OUT/overlays/*.png`` and
``OUT/predictions_info.json`` (which weights made them). A folder that holds the predictions of
other weights is refused, so results of two models never mix. The overlays are drawn into a hidden
folder that replaces the old one in one rename; the JSON files are replaced atomically.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from posealign.cli.predict_inputs import ImageInput, open_input_image
from posealign.errors import UserError
from posealign.files import atomic_write_json
from posealign.inference import PosePrediction
from posealign.keypoints import KeypointSet
from posealign.skeleton_drawing import draw_pose

OVERLAY_SIDE = 384  # overlays of smaller images are enlarged (nearest neighbour) to about this size
INFO_FILE = "predictions_info.json"


def check_output_folder(out: Path, fingerprint: str) -> None:
    """Refuse an ``out`` that is a file, or that holds predictions of other weights (or of unknown origin)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another --out")
    predictions, info_path = out / "predictions.json", out / INFO_FILE
    if not predictions.exists() and not info_path.exists():
        return
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError):
        raise UserError(
            f"{predictions}: holds predictions not written by posealign predict (no readable {INFO_FILE}); "
            "choose another --out or delete them"
        ) from None
    if info.get("weights_sha256") != fingerprint:
        raise UserError(
            f"{out}: holds predictions of another checkpoint ({info.get('checkpoint')}); choose another --out or delete "
            f"{predictions}"
        )


def coco_result(image: ImageInput, pose: PosePrediction) -> dict:
    """One COCO keypoint result: keypoints [x, y, score] * K in original pixels."""
    triples = np.concatenate([pose.keypoints, pose.confidence[:, None]], axis=1)
    return {
        "image_id": image.image_id,
        "file_name": image.file_name,
        "category_id": 1,
        "keypoints": [round(float(v), 3) for v in triples.reshape(-1)],
        "score": round(pose.score, 5),
        "bbox": [round(float(v), 2) for v in pose.box],
    }


def draw_overlay(
    image: Image.Image,
    poses: list[PosePrediction],
    keypoint_set: KeypointSet,
    draw_boxes: bool,
    kpt_thr: float = 0.1,
) -> Image.Image:
    """The image (enlarged when small) with each pose's skeleton, confidence-sized dots and their values;
    keypoints below ``kpt_thr`` are hollow and unlinked."""
    scale = max(1, math.ceil(OVERLAY_SIDE / max(image.size)))
    canvas = image.resize((image.width * scale, image.height * scale), Image.NEAREST) if scale > 1 else image.copy()
    for pose in poses:
        if draw_boxes:
            x, y, w, h = (float(v) * scale for v in pose.box)
            ImageDraw.Draw(canvas).rectangle((x, y, x + w, y + h), outline=(255, 255, 0), width=max(1, scale // 2))
        canvas = draw_pose(
            canvas, pose.keypoints * scale, pose.confidence, keypoint_set, min_confidence=kpt_thr, label_confidence=True
        )
    return canvas


def overlay_names(images: list[ImageInput]) -> list[str]:
    """``sub/a.jpg`` -> ``sub__a.png``; a name taken twice gets ``_2``, ``_3``..."""
    names, taken = [], set()
    for image in images:
        parts = Path(image.file_name).with_suffix("").parts
        stem = "__".join(p for p in parts if p not in ("/", ".", "..")) or "image"
        name, counter = f"{stem}.png", 2
        while name in taken:
            name, counter = f"{stem}_{counter}.png", counter + 1
        taken.add(name)
        names.append(name)
    return names


def write_predictions(
    out: Path,
    images: list[ImageInput],
    poses_per_image: list[list[PosePrediction]],
    keypoint_set: KeypointSet,
    info: dict,
    draw_boxes: bool,
    kpt_thr: float = 0.1,
) -> list[dict]:
    """Write the results, the overlays and ``info`` into ``out``; returns the COCO results written.

    The overlays go to a hidden folder next to the final one first, then are swapped in.
    """
    results = [coco_result(image, pose) for image, poses in zip(images, poses_per_image, strict=True) for pose in poses]
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".overlays-", dir=out))
    try:
        for image, poses, name in zip(images, poses_per_image, overlay_names(images), strict=True):
            overlay = draw_overlay(open_input_image(image.path), poses, keypoint_set, draw_boxes, kpt_thr)
            overlay.save(staging / name)
        previous = out / "overlays"
        retired = out / f".overlays-old-{staging.name}"
        if previous.exists():
            previous.rename(retired)
        staging.rename(previous)
        atomic_write_json(out / "predictions.json", results, indent=1)
        atomic_write_json(out / INFO_FILE, {**info, "objects": len(results)}, indent=1)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return results

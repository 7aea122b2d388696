"""Inference on any images: load a trained pose network, predict keypoints in the images' own pixels.

A model comes from a training checkpoint (``RUN/checkpoints/final.pt``: the teacher when the run has
one, else the student, as every reported number) or from a file written by ``posealign export``
(safetensors whose header holds the keypoint set and the preprocessing).

Each object is cropped as evaluation crops it: a square of ``box_scale`` x the longest side of its
box (``load_coco``'s ``crop="bbox"``), or the whole image with its aspect kept when there is no box
(``crop="image"``); zero padding outside the image; resized to ``image_size``. Heatmaps are decoded
with ``decode_heatmaps`` and mapped back with ``crop_to_image``.

``predict_files`` is ``posealign predict``: it checks every input and the output folder before it
writes anything, then writes ``predictions.json`` (COCO keypoint results), ``overlays/*.png`` and
``predictions_info.json`` (which weights made them).
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageDraw, UnidentifiedImageError
from torch import nn

from posealign.data.records import square_box_around
from posealign.errors import UserError
from posealign.heatmaps import crop_to_image, decode_heatmaps
from posealign.keypoints import KEYPOINT_SETS, KeypointSet, keypoint_set_from_coco_category
from posealign.models.simple_baseline import SimpleBaseline, build_pose_model
from posealign.visualization import draw_pose

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
EXPORT_FORMAT = "posealign.pose_model"
EXPORT_FORMAT_VERSION = 1
DEFAULT_BOX_SCALE = 1.25  # load_coco's crop_scale: the top-down protocol's margin around a box
NORMALIZATION_NOTE = (
    "input: RGB float (B, 3, S, S) in [0, 1]; the ImageNet mean/std normalisation is applied inside the "
    "model (buffers pixel_mean/pixel_std), do not normalise before calling it"
)
OVERLAY_SIDE = 384  # overlays of smaller images are enlarged (nearest neighbour) to about this size
INFO_FILE = "predictions_info.json"


@dataclass(frozen=True)
class Preprocessing:
    """How images must reach the model: a square crop resized to ``image_size``, values in [0, 1]."""

    image_size: int
    heatmap_size: int
    sigma: float
    box_scale: float = DEFAULT_BOX_SCALE


@dataclass
class PosePrediction:
    """One object. keypoints (K, 2) x, y in original image pixels; confidence (K,) = heatmap peaks;
    box (4,) x, y, w, h of the object box (the whole image when none was given); crop_box (4,) the
    square region the network saw."""

    keypoints: np.ndarray
    confidence: np.ndarray
    box: np.ndarray
    crop_box: np.ndarray

    @property
    def score(self) -> float:
        """Object score: the mean keypoint confidence."""
        return float(np.mean(self.confidence))


@dataclass
class PoseWeights:
    """What a checkpoint or an exported file holds, before a network is built from it."""

    state_dict: dict[str, torch.Tensor]
    keypoint_set: KeypointSet
    model_config: dict
    preprocessing: Preprocessing
    origin: dict  # checkpoint, weights ("teacher" | "student"), method, preset, task, step


# ------------------------------------------------------------------------------ loading


def keypoint_set_from_saved(saved: dict) -> KeypointSet:
    """A keypoint set from its saved form ({name, names, skeleton[, flip_pairs, groups, all_group]}).

    A built-in set with the same names comes back whole (its evaluation groups included); otherwise
    the set is rebuilt the way a COCO category defines one.
    """
    names = tuple(str(n) for n in saved["names"])
    skeleton = tuple((int(i), int(j)) for i, j in saved.get("skeleton", []))
    known = KEYPOINT_SETS.get(saved.get("name"))
    if known is not None and known.names == names:
        return known
    if "flip_pairs" in saved and "groups" in saved:
        return KeypointSet(
            name=str(saved.get("name", "custom")),
            names=names,
            flip_pairs=tuple((int(i), int(j)) for i, j in saved["flip_pairs"]),
            skeleton=skeleton,
            groups={str(g): tuple(int(i) for i in members) for g, members in saved["groups"].items()},
            all_group=tuple(int(i) for i in saved.get("all_group", ())),
        )
    category = {
        "name": saved.get("name", "custom"),
        "keypoints": list(names),
        "skeleton": [[i + 1, j + 1] for i, j in skeleton],
    }
    return keypoint_set_from_coco_category(category)


def keypoint_set_to_saved(keypoint_set: KeypointSet) -> dict:
    return {
        "name": keypoint_set.name,
        "names": list(keypoint_set.names),
        "skeleton": [list(p) for p in keypoint_set.skeleton],
        "flip_pairs": [list(p) for p in keypoint_set.flip_pairs],
        "groups": {g: list(members) for g, members in keypoint_set.groups.items()},
        "all_group": list(keypoint_set.all_group),
    }


def read_training_checkpoint(path: Path) -> PoseWeights:
    """The evaluation weights of a training checkpoint: the teacher if the run has one, else the student."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own files (RNG states inside)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise UserError(
            f"{path}: cannot read checkpoint ({type(error).__name__}); pass RUN/checkpoints/final.pt or a file "
            "written by posealign export"
        ) from None
    if not isinstance(state, dict) or "student" not in state or "config" not in state:
        raise UserError(
            f"{path}: not a posealign training checkpoint (no 'student'/'config'); pass RUN/checkpoints/final.pt "
            "or a file written by posealign export"
        )
    config = state["config"]
    which = "teacher" if state.get("teacher") is not None else "student"
    saved_set = state.get("keypoint_set") or {"name": config["data"]["keypoint_set"]}
    if "names" not in saved_set:
        saved_set = keypoint_set_to_saved(KEYPOINT_SETS[saved_set["name"]])
    data = config["data"]
    return PoseWeights(
        state_dict=state[which],
        keypoint_set=keypoint_set_from_saved(saved_set),
        model_config=dict(config["model"]),
        preprocessing=Preprocessing(int(data["image_size"]), int(data["heatmap_size"]), float(data["sigma"])),
        origin={
            "checkpoint": str(path),
            "weights": which,
            "method": config.get("method"),
            "preset": config.get("preset"),
            "task": config.get("task"),
            "step": state.get("step"),
        },
    )


def read_exported_model(path: Path) -> PoseWeights:
    """Weights and metadata of a ``posealign export`` safetensors file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        state_dict = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(
            f"{path}: cannot read safetensors file ({error}); export it again with posealign export"
        ) from None
    if header.get("format") != EXPORT_FORMAT:
        raise UserError(
            f"{path}: safetensors file without posealign metadata (format {header.get('format')!r}); "
            "write it with posealign export"
        )
    try:
        meta = {key: json.loads(value) for key, value in header.items() if key != "format"}
        return PoseWeights(
            state_dict=state_dict,
            keypoint_set=keypoint_set_from_saved(meta["keypoint_set"]),
            model_config=dict(meta["model"]),
            preprocessing=Preprocessing(
                int(meta["image_size"]), int(meta["heatmap_size"]), float(meta["sigma"]), float(meta["box_scale"])
            ),
            origin={**meta.get("origin", {}), "exported": str(path)},
        )
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(
            f"{path}: incomplete posealign metadata ({type(error).__name__}: {error}); export it again"
        ) from None


def read_pose_weights(path: str | Path) -> PoseWeights:
    """A checkpoint (``.pt``), an export (``.safetensors``) or a run directory (its final checkpoint)."""
    path = Path(path)
    if path.is_dir() and (path / "checkpoints" / "final.pt").is_file():
        path = path / "checkpoints" / "final.pt"
    if not path.is_file():
        raise UserError(
            f"{path}: checkpoint not found; pass RUN/checkpoints/final.pt or a .safetensors file written by posealign export"
        )
    with open(path, "rb") as handle:
        head = handle.read(9)
    # safetensors: 8-byte little-endian header length, then the JSON header.
    if path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{"):
        return read_exported_model(path)
    return read_training_checkpoint(path)


def build_model_from_weights(weights: PoseWeights, source: Path | str) -> SimpleBaseline:
    """The network of ``weights.model_config`` with its weights loaded (no backbone download)."""
    model_config = OmegaConf.create({**weights.model_config, "pretrained": "none"})
    model = build_pose_model(model_config, weights.keypoint_set.num_keypoints)
    try:
        model.load_state_dict(weights.state_dict, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise UserError(
            f"{source}: weights do not fit the model its config describes ({first}); re-export it"
        ) from None
    return model.eval()


def load_pose_model(
    path: str | Path, keypoint_set: KeypointSet | None = None, device: str | torch.device = "cpu"
) -> tuple[SimpleBaseline, KeypointSet, Preprocessing]:
    """The network of a checkpoint or export, in eval mode on ``device``, with its keypoint set and
    preprocessing. ``keypoint_set``: the set a caller requires; another one is a ``UserError``."""
    weights = read_pose_weights(path)
    if keypoint_set is not None and tuple(keypoint_set.names) != tuple(weights.keypoint_set.names):
        raise UserError(
            f"{path}: model predicts keypoint set {weights.keypoint_set.name!r} ({weights.keypoint_set.num_keypoints} "
            f"keypoints) but {keypoint_set.name!r} ({keypoint_set.num_keypoints}) is required; use a checkpoint "
            f"trained on {keypoint_set.name!r}"
        )
    model = build_model_from_weights(weights, path).to(device)
    return model, weights.keypoint_set, weights.preprocessing


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 of the state dict (names and bytes): the same weights give the same fingerprint,
    whether they were loaded from a checkpoint or from its export."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------ prediction


def object_crop_box(box: np.ndarray | list[float], scale: float = DEFAULT_BOX_SCALE) -> np.ndarray:
    """Square (x, y, side, side) around an object box (x, y, w, h): ``scale`` x its longest side."""
    x, y, w, h = (float(v) for v in box)
    return square_box_around(x, y, x + w, y + h, scale)


def image_crop_box(width: int, height: int) -> np.ndarray:
    """The square around a whole image (aspect kept; the short side is zero-padded)."""
    return square_box_around(0, 0, width, height)


def crop_square(image: Image.Image, crop_box: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``crop_box`` out of ``image`` (zeros outside it) and resize to ``size`` x ``size``.

    Same rounding as ``crop_record``; returns the crop (size, size, 3) uint8 and the integer box used
    (x, y, side, side), which maps back: x_image = x + x_crop * side / size.
    """
    x, y, w, _ = (float(v) for v in crop_box)
    side = max(int(round(w)), 1)
    x0, y0 = int(round(x)), int(round(y))
    crop = image.convert("RGB").crop((x0, y0, x0 + side, y0 + side))  # PIL pads outside the image with zeros
    if side != size:
        crop = crop.resize((size, size), Image.BILINEAR, reducing_gap=None)
    return np.asarray(crop, dtype=np.uint8), np.array([x0, y0, side, side], dtype=np.float32)


@torch.no_grad()
def predict_crop_boxes(
    model: nn.Module,
    images: list[Image.Image],
    crop_boxes: list[np.ndarray],
    image_size: int,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the model on one crop per (image, crop box) pair.

    Returns keypoints (N, K, 2) in original image pixels, confidence (N, K) and the crop boxes used (N, 4).
    """
    model.eval()
    device = next(model.parameters()).device
    coords_all, confidence_all, used_all = [], [], []
    for start in range(0, len(images), batch_size):
        crops, used = zip(
            *(
                crop_square(image, box, image_size)
                for image, box in zip(
                    images[start : start + batch_size], crop_boxes[start : start + batch_size], strict=True
                )
            ),
            strict=True,
        )
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).to(device).float().div_(255.0)
        heatmaps, _ = model(batch)  # (B, K, H, W)
        heatmaps = heatmaps.float().cpu()
        coords, confidence = decode_heatmaps(heatmaps, image_size / heatmaps.shape[-1])
        used_boxes = torch.from_numpy(np.stack(used))
        coords_all.append(crop_to_image(coords, used_boxes, image_size).numpy())
        confidence_all.append(confidence.numpy())
        used_all.append(used_boxes.numpy())
    if not coords_all:
        return np.zeros((0, 0, 2), np.float32), np.zeros((0, 0), np.float32), np.zeros((0, 4), np.float32)
    return np.concatenate(coords_all), np.concatenate(confidence_all), np.concatenate(used_all)


def predict_images(
    model: nn.Module,
    images: list[Image.Image],
    boxes: list[list[list[float]]] | None,
    image_size: int,
    batch_size: int = 32,
    box_scale: float = DEFAULT_BOX_SCALE,
) -> list[list[PosePrediction]]:
    """Poses of the objects in each image: one per box of ``boxes[i]`` (x, y, w, h), or one for the
    whole image when ``boxes`` is None. Keypoints come back in each image's own pixels."""
    if boxes is not None and len(boxes) != len(images):
        raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
    jobs: list[tuple[int, np.ndarray, np.ndarray]] = []  # image index, object box, crop box
    for index, image in enumerate(images):
        if image.width < 2 or image.height < 2:
            raise UserError(f"image {index} is {image.width}x{image.height}; at least 2x2 pixels are needed")
        if boxes is None:
            jobs.append((index, np.array([0, 0, image.width, image.height], np.float32), image_crop_box(*image.size)))
        else:
            for box in boxes[index]:
                jobs.append((index, np.asarray(box, np.float32), object_crop_box(box, box_scale)))
    coords, confidence, used = predict_crop_boxes(
        model, [images[i] for i, _, _ in jobs], [crop for _, _, crop in jobs], image_size, batch_size
    )
    poses: list[list[PosePrediction]] = [[] for _ in images]
    for n, (index, box, _) in enumerate(jobs):
        poses[index].append(PosePrediction(coords[n], confidence[n], box, used[n]))
    return poses


# ------------------------------------------------------------------------------ posealign predict


@dataclass
class ImageInput:
    """An image to predict: its path, the name it gets in the results, and its boxes (None: whole image)."""

    path: Path
    file_name: str
    image_id: int
    boxes: list[list[float]] | None = None


def collect_images(specs: list[str]) -> list[ImageInput]:
    """Files, folders (searched recursively) and globs -> images in a stable order, each once.

    ``file_name`` is the path below the folder for folder inputs, the path as given otherwise.
    """
    found: list[tuple[Path, str]] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not matches:
                raise UserError(f"{spec}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)}); pass another folder")
            found += [(p, p.relative_to(path).as_posix()) for p in matches]
        elif path.is_file():
            found.append((path, path.as_posix()))
        elif glob.has_magic(spec):
            matches = sorted(
                Path(p) for p in glob.glob(spec, recursive=True) if Path(p).suffix.lower() in IMAGE_EXTENSIONS
            )
            matches = [p for p in matches if p.is_file()]
            if not matches:
                raise UserError(f"{spec}: pattern matches no image files; check the pattern (quote it for the shell)")
            found += [(p, p.as_posix()) for p in matches]
        else:
            raise UserError(f"{spec}: no such file or folder; pass image files, folders or glob patterns")
    images, seen = [], set()
    for path, name in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            images.append(ImageInput(path, name, len(images) + 1))
    return images


def read_box_file(path: Path) -> dict[str, dict]:
    """A COCO JSON's images and boxes: file_name -> {"id", "boxes": [[x, y, w, h], ...]}.

    Crowd annotations (``iscrowd: 1``) are skipped; an image without annotations has no boxes.
    """
    if not path.is_file():
        raise UserError(f"{path}: box file not found; pass a COCO JSON with 'images' and 'annotations' (bbox)")
    try:
        coco = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: box file is not valid JSON ({error}); pass a COCO JSON") from None
    if (
        not isinstance(coco, dict)
        or not isinstance(coco.get("images"), list)
        or not isinstance(coco.get("annotations"), list)
    ):
        raise UserError(f"{path}: box file needs 'images' and 'annotations' lists (COCO format)")
    entries: dict[str, dict] = {}
    by_id: dict = {}
    for image in coco["images"]:
        if "file_name" not in image or "id" not in image:
            raise UserError(
                f"{path}: an entry of 'images' lacks 'file_name' or 'id' ({json.dumps(image)[:80]}); fix the file"
            )
        entry = {"id": image["id"], "file_name": str(image["file_name"]), "boxes": []}
        entries[entry["file_name"]] = entry
        by_id[image["id"]] = entry
    for annotation in coco["annotations"]:
        if annotation.get("iscrowd", 0):
            continue
        bbox = annotation.get("bbox")
        ok = isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)
        if not ok or bbox[2] <= 0 or bbox[3] <= 0:
            raise UserError(
                f"{path}: annotation {annotation.get('id')} has bbox {bbox!r}; give [x, y, width, height] with positive size"
            )
        entry = by_id.get(annotation.get("image_id"))
        if entry is None:
            raise UserError(
                f"{path}: annotation {annotation.get('id')} points to image_id {annotation.get('image_id')!r}, "
                "which is not in 'images'; fix the file"
            )
        entry["boxes"].append([float(v) for v in bbox])
    return entries


def attach_boxes(images: list[ImageInput], entries: dict[str, dict], box_file: Path) -> None:
    """Give each image the boxes of its entry in the box file: the entry whose ``file_name`` is the
    longest trailing part of the image's path. An image the file does not list is an error."""
    by_base: dict[str, list[dict]] = {}
    for entry in entries.values():
        by_base.setdefault(Path(entry["file_name"]).name, []).append(entry)
    for image in images:
        parts = image.path.resolve().parts
        best, best_length = None, -1
        for entry in by_base.get(image.path.name, []):
            entry_parts = Path(entry["file_name"]).parts
            if Path(entry["file_name"]).is_absolute():
                matches = Path(entry["file_name"]).resolve() == image.path.resolve()
            else:
                matches = tuple(parts[-len(entry_parts) :]) == tuple(entry_parts)
            if matches and len(entry_parts) > best_length:
                best, best_length = entry, len(entry_parts)
        if best is None:
            raise UserError(
                f"{image.path}: not listed in the 'images' of {box_file}; add it there or leave it out of IMAGES"
            )
        image.file_name, image.image_id, image.boxes = best["file_name"], best["id"], best["boxes"]


def open_image(path: Path) -> Image.Image:
    """An RGB image, fully decoded, or a one-line error naming the file."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"{path}: image file not found; pass existing files") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UserError(
            f"{path}: cannot decode image ({type(error).__name__}); replace the file or leave it out of IMAGES"
        ) from None
    if image.width < 2 or image.height < 2:
        raise UserError(
            f"{path}: image is {image.width}x{image.height}, at least 2x2 pixels are needed; leave it out of IMAGES"
        )
    return image


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
    image: Image.Image, poses: list[PosePrediction], keypoint_set: KeypointSet, draw_boxes: bool
) -> Image.Image:
    """The image (enlarged when small) with each pose's skeleton, confidence-sized dots and their values."""
    scale = max(1, math.ceil(OVERLAY_SIDE / max(image.size)))
    canvas = image.resize((image.width * scale, image.height * scale), Image.NEAREST) if scale > 1 else image.copy()
    for pose in poses:
        if draw_boxes:
            x, y, w, h = (float(v) * scale for v in pose.box)
            ImageDraw.Draw(canvas).rectangle((x, y, x + w, y + h), outline=(255, 255, 0), width=max(1, scale // 2))
        canvas = draw_pose(canvas, pose.keypoints * scale, pose.confidence, keypoint_set, label_confidence=True)
    return canvas


def _overlay_names(images: list[ImageInput]) -> list[str]:
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


def _write_json_atomic(path: Path, payload) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=1))
    os.replace(temporary, path)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def predict_files(
    inputs: list[str],
    checkpoint: str | Path,
    out: str | Path,
    box_file: str | Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
) -> list[dict]:
    """``posealign predict``: predict every image of ``inputs``, write ``out/predictions.json`` (COCO
    keypoint results), ``out/overlays/<name>.png`` and ``out/predictions_info.json``; returns the results.

    Every input, the box file and the output folder are checked, and every prediction made, before
    anything is written; the files then replace their previous versions atomically.
    """
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    out = Path(out)
    images = collect_images(inputs)
    if box_file is not None:
        attach_boxes(images, read_box_file(Path(box_file)), Path(box_file))
    model, keypoint_set, preprocessing = load_pose_model(checkpoint, device=resolve_device(device))
    fingerprint = weights_fingerprint(model)
    check_output_folder(out, fingerprint)

    results: list[dict] = []
    poses_per_image: list[list[PosePrediction]] = []
    per_chunk = max(batch_size, 1)
    for start in range(0, len(images), per_chunk):
        chunk = images[start : start + per_chunk]
        decoded = [open_image(image.path) for image in chunk]
        boxes = None if box_file is None else [image.boxes for image in chunk]
        poses = predict_images(model, decoded, boxes, preprocessing.image_size, batch_size, preprocessing.box_scale)
        for image, image_poses in zip(chunk, poses, strict=True):
            results += [coco_result(image, pose) for pose in image_poses]
            poses_per_image.append(image_poses)

    # Everything is known to be fine: write next to the final places, then swap in.
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".overlays-", dir=out))
    try:
        for image, poses, name in zip(images, poses_per_image, _overlay_names(images), strict=True):
            overlay = draw_overlay(open_image(image.path), poses, keypoint_set, draw_boxes=box_file is not None)
            overlay.save(staging / name)
        info = {
            "checkpoint": str(checkpoint),
            "weights_sha256": fingerprint,
            "keypoint_set": keypoint_set_to_saved(keypoint_set),
            "image_size": preprocessing.image_size,
            "box_scale": preprocessing.box_scale,
            "boxes": str(box_file) if box_file is not None else None,
            "images": len(images),
            "objects": len(results),
        }
        previous = out / "overlays"
        retired = out / f".overlays-old-{staging.name}"
        if previous.exists():
            previous.rename(retired)
        staging.rename(previous)
        _write_json_atomic(out / "predictions.json", results)
        _write_json_atomic(out / INFO_FILE, info)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return results

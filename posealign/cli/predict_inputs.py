"""What ``posealign predict`` reads: image files, folders and globs, and the boxes of a COCO JSON.

Every input is checked here, before the model runs or anything is written, so that a bad file is
one line naming it and the output folder stays as it was.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from posealign.errors import UserError
from posealign.image_crops import IMAGE_EXTENSIONS, read_rgb_image


@dataclass
class ImageInput:
    """An image to predict: its path, the name it gets in the results, and its boxes (None: whole image)."""

    path: Path
    file_name: str
    image_id: int
    boxes: list[list[float]] | None = None


def collect_images(specs: list[str], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[ImageInput]:
    """Files, folders (searched recursively for ``extensions``) and globs -> files in a stable order, each once.

    ``file_name`` is the path below the folder for folder inputs, the path as given otherwise.
    """
    found: list[tuple[Path, str]] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            if not matches:
                raise UserError(f"{spec}: folder holds no {' '.join(extensions)} files; pass another folder")
            found += [(p, p.relative_to(path).as_posix()) for p in matches]
        elif path.is_file():
            found.append((path, path.as_posix()))
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).suffix.lower() in extensions)
            matches = [p for p in matches if p.is_file()]
            if not matches:
                raise UserError(
                    f"{spec}: pattern matches no {' '.join(extensions)} files; check the pattern (quote it for the shell)"
                )
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


def read_box_json(path: Path, missing_fix: str, broken_fix: str) -> object:
    """The parsed JSON of a ``--boxes`` file, or a one-line error naming it: ``missing_fix`` when it
    does not exist, ``broken_fix`` when it is not JSON."""
    if not path.is_file():
        raise UserError(f"{path}: box file not found; {missing_fix}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: box file is not valid JSON ({error}); {broken_fix}") from None


def read_box_file(path: Path) -> dict[str, dict]:
    """A COCO JSON's images and boxes: file_name -> {"id", "boxes": [[x, y, w, h], ...]}.

    Crowd annotations (``iscrowd: 1``) are skipped; an image without annotations has no boxes.
    """
    coco = read_box_json(path, "pass a COCO JSON with 'images' and 'annotations' (bbox)", "pass a COCO JSON")
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


def listed_name(path: Path, names: list[str]) -> str | None:
    """The name in ``names`` that is the longest trailing part of ``path`` (``a.jpg`` and ``sub/a.jpg``
    both name ``data/sub/a.jpg``; the second wins), an absolute name only the file itself; None if none."""
    parts = path.resolve().parts
    best, best_length = None, -1
    for name in names:
        if Path(name).name != path.name:
            continue
        name_parts = Path(name).parts
        if Path(name).is_absolute():
            matches = Path(name).resolve() == path.resolve()
        else:
            matches = tuple(parts[-len(name_parts) :]) == tuple(name_parts)
        if matches and len(name_parts) > best_length:
            best, best_length = name, len(name_parts)
    return best


def attach_boxes(images: list[ImageInput], entries: dict[str, dict], box_file: Path) -> None:
    """Give each image the boxes of its entry in the box file: the entry whose ``file_name`` is the
    longest trailing part of the image's path. An image the file does not list is an error."""
    names = list(entries)
    for image in images:
        best = listed_name(image.path, names)
        if best is None:
            raise UserError(
                f"{image.path}: not listed in the 'images' of {box_file}; add it there or leave it out of IMAGES"
            )
        entry = entries[best]
        image.file_name, image.image_id, image.boxes = entry["file_name"], entry["id"], entry["boxes"]


def open_input_image(path: Path) -> Image.Image:
    """An input image, decoded, or a one-line error naming the file."""
    return read_rgb_image(
        path, missing_fix="pass existing files", broken_fix="replace the file or leave it out of IMAGES"
    )

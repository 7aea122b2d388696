"""SynAnimal (CC-SSL's synthetic animals), from its cleaned keypoint lists or from the raw renders.

Two layouts, tried in this order with ``source="auto"``:

1. Cleaned lists (what CC-SSL and UDAPE/DAML read)::

       root/clean_data/keypoints_18.json   (or root/keypoints_18.json; keypoints_14.json alike)
       {animal: {"keypoints": N x K x 3, "imgpath": [N paths], "bbox": N x [x_min, x_max, y_min, y_max],
                 "train_idxs": [...], "valid_idxs": [...]}}

   Note the box order, x_min, x_max, y_min, y_max (as the released generator writes it). Image
   paths were written relative to the release's working folder (``./animal_data/synthetic_animal/
   horse_combineds5r5_texture/00001img.png``); they are resolved from the ``*_combineds5r5_texture``
   folder onwards, under ``root/synthetic_animal/`` or ``root/``. ``img_path``/``image_path`` and
   ``test_idxs``/``val_idxs`` are accepted as field names too. For ``num_keypoints=14`` without a
   ``keypoints_14.json``, the 18-keypoint list is reduced by ``ANIMAL18_TO_ANIMAL14``.

2. Raw renders: ``root/[synthetic_animal/]{animal}_combineds5r5_texture/*img.png`` with ``*kpts.npy``
   (the projected mesh vertices, V x 3: x, y, visibility). The keypoints are the mesh vertices in
   ``VERTEX_INDICES_18`` (taken from the released generators; the 14-keypoint lists drop chin, hip
   and shoulders, exactly as the released 14-keypoint lists do). Other animals (elephant) need
   ``vertex_indices``. A kpts file with exactly K rows is taken as already selected. The box spans
   all vertices (released generator). Split: an image is in ``test`` when its rank, ordered by a
   hash of ``"{animal}/{file name}"``, falls in the first ``test_fraction``.

Visibility (released code): the renderer labels occluded keypoints too and training uses them
(``use_occluded=True``); a keypoint outside the image is invisible. With ``use_occluded=False``
the render's visibility column is applied as well. The release hard-codes 640 x 480 renders; here the
size is read from the first image of each animal (640 x 480 when unreadable) unless ``image_size``
is given. Crop: the box clipped to the image, then a square of 1.25 x its longer side.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np

from posealign.data.records import PoseDataset, RecordCollector, held_out_keys, read_json_file, square_box_around
from posealign.errors import DatasetFormatError
from posealign.image_crops import read_image_size
from posealign.keypoints import ANIMAL14, ANIMAL18

SPLITS = ("train", "test", "all")
RENDER_SUFFIX = "_combineds5r5_texture"
DEFAULT_RENDER_SIZE = (640, 480)
ANIMAL18_TO_ANIMAL14 = (0, 1, 3, 4, 5, 6, 8, 9, 10, 11, 14, 15, 16, 17)
VERTEX_INDICES_18 = {
    "horse": (1718, 1684, 1271, 1634, 1650, 1643, 1659, 925, 392, 564, 993, 726, 1585, 1556, 427, 1548, 967, 877),
    "tiger": (2753, 2679, 2032, 1451, 1287, 3085, 1632, 229, 1441, 1280, 2201, 1662, 266, 158, 270, 152, 219, 129),
    "hound": (2028, 2580, 912, 878, 977, 1541, 1734, 480, 799, 1575, 1446, 602, 755, 673, 780, 1580, 466, 631),
    "sheep": (2046, 1944, 1267, 1875, 1900, 1868, 1894, 687, 173, 1829, 1422, 821, 624, 580, 622, 575, 1370, 716),
}


def load_synanimal(
    root: str | Path,
    split: str = "train",
    animal: str = "all",
    num_keypoints: int = 18,
    source: str = "auto",
    test_fraction: float = 0.2,
    use_occluded: bool = True,
    vertex_indices: list[int] | tuple[int, ...] | None = None,
    image_size: tuple[int, int] | None = None,
    crop_scale: float = 1.25,
    check_images: bool = True,
) -> PoseDataset:
    """Read SynAnimal ``animal`` (a name or ``all``) with the animal18 or animal14 keypoint set."""
    root = Path(root)
    if split not in SPLITS:
        raise DatasetFormatError(f"{root}: SynAnimal has splits {list(SPLITS)}, not {split!r}; pass one of them")
    if num_keypoints not in (18, 14):
        raise DatasetFormatError(f"{root}: num_keypoints must be 18 (animal18) or 14 (animal14), not {num_keypoints}")
    if source not in ("auto", "json", "raw"):
        raise DatasetFormatError(f"{root}: source must be 'auto', 'json' or 'raw', not {source!r}")
    keypoint_set = ANIMAL18 if num_keypoints == 18 else ANIMAL14
    list_file = _find_list_file(root, num_keypoints)
    if source == "json" or (source == "auto" and list_file is not None):
        if list_file is None:
            raise DatasetFormatError(
                f"{root / 'clean_data'}: no keypoints_{num_keypoints}.json (or keypoints_18.json); "
                f"put the cleaned lists there or pass source='raw'"
            )
        samples = _samples_from_list(root, list_file, animal, num_keypoints)
    else:
        samples = _samples_from_renders(root, animal, num_keypoints, test_fraction, vertex_indices)
    records = _records(samples, split, use_occluded, image_size, crop_scale).checked_records(
        check_images,
        lambda missing: (
            f"{list_file or root}: {len(missing)} listed image(s) missing, first {missing[0]}; "
            f"extract the *{RENDER_SUFFIX} folders under {root / 'synthetic_animal'}"
        ),
    )
    return PoseDataset(name="synanimal", root=root, keypoint_set=keypoint_set, records=records)


def _find_list_file(root: Path, num_keypoints: int) -> Path | None:
    for count in dict.fromkeys((num_keypoints, 18)):
        for folder in (root / "clean_data", root):
            if (folder / f"keypoints_{count}.json").is_file():
                return folder / f"keypoints_{count}.json"
    return None


def _samples_from_list(root: Path, path: Path, animal: str, num_keypoints: int) -> list[dict]:
    data = read_json_file(path, "regenerate it")
    if not isinstance(data, dict) or not data:
        raise DatasetFormatError(
            f"{path}: expected {{animal: {{keypoints, imgpath, bbox, train_idxs, valid_idxs}}}}; use CC-SSL's cleaned list"
        )
    samples = []
    for name in _selected_animals(animal, data, f"{path}: no animal {animal!r}; animals here: {sorted(data)}"):
        entry = data[name]
        paths = _first_field(entry, ("imgpath", "img_path", "image_path"), path, name)
        keypoints = _first_field(entry, ("keypoints",), path, name)
        boxes = _first_field(entry, ("bbox",), path, name)
        try:
            keypoints, boxes = np.asarray(keypoints, dtype=np.float32), np.asarray(boxes, dtype=np.float32)
        except ValueError:  # ragged lists
            raise DatasetFormatError(
                f"{path}: {name} keypoints or boxes are ragged (rows of different lengths); every image needs "
                f"the same keypoint count and a 4-number box"
            ) from None
        if keypoints.ndim != 3 or keypoints.shape[2] not in (2, 3) or keypoints.shape[1] not in (18, 14):
            raise DatasetFormatError(
                f"{path}: {name} keypoints have shape {list(keypoints.shape)}, expected N x 18 (or 14) x 3"
            )
        if keypoints.shape[1] == 18 and num_keypoints == 14:
            keypoints = keypoints[:, list(ANIMAL18_TO_ANIMAL14)]
        if keypoints.shape[1] != num_keypoints:
            raise DatasetFormatError(
                f"{path}: {name} has {keypoints.shape[1]} keypoints per image, the animal{num_keypoints} set needs "
                f"{num_keypoints}; pass num_keypoints={keypoints.shape[1]}"
            )
        if not (len(paths) == len(keypoints) == len(boxes)) or boxes.shape[1:] != (4,):
            raise DatasetFormatError(
                f"{path}: {name} lists {len(paths)} images, {len(keypoints)} keypoint sets and boxes of shape "
                f"{list(boxes.shape)}; they must match (N, N, N x 4)"
            )
        train = {int(i) for i in entry.get("train_idxs", [])}
        test = {int(i) for i in _first_field(entry, ("valid_idxs", "test_idxs", "val_idxs"), None, name) or []}
        resolve = _path_resolver(root, paths)
        for index, (image_path, points, (x_min, x_max, y_min, y_max)) in enumerate(
            zip(paths, keypoints, boxes, strict=True)
        ):
            split = "test" if index in test else "train" if index in train else None
            samples.append(
                {
                    "image": resolve(image_path),
                    "keypoints": points,
                    "box": (x_min, y_min, x_max, y_max),
                    "split": split,
                    "animal": name,
                }
            )
    return samples


def _selected_animals(animal: str, available: Collection[str], not_found: str) -> list[str]:
    """The animals to read: every one ``available`` (sorted) for ``"all"``, else the one named
    (``not_found`` is the error message when it is not there)."""
    if animal == "all":
        return sorted(available)
    if animal not in available:
        raise DatasetFormatError(not_found)
    return [animal]


def _first_field(entry: dict, names: tuple[str, ...], path: Path | None, animal: str) -> object:
    for name in names:
        if name in entry:
            return entry[name]
    if path is None:
        return None
    raise DatasetFormatError(
        f"{path}: {animal} has no {names[0]!r} field (found {sorted(entry)}); use CC-SSL's cleaned list"
    )


def _path_resolver(root: Path, paths: list[str]) -> Callable[[str], Path]:
    """Map a path as the release wrote it to a file under ``root`` (the base is chosen once, on the first path)."""

    def render_tail(path: str) -> Path | None:
        parts = Path(path).parts
        for i, part in enumerate(parts):
            if part.endswith(RENDER_SUFFIX):
                return Path(*parts[i:])
        return None

    bases = [root / "synthetic_animal", root]
    first = render_tail(paths[0]) if paths else None
    base = next((b for b in bases if first is not None and (b / first).is_file()), bases[0])

    def resolve(path: str) -> Path:
        tail = render_tail(path)
        if tail is not None:
            return base / tail
        return Path(path) if Path(path).is_absolute() else root / path

    return resolve


def _samples_from_renders(
    root: Path,
    animal: str,
    num_keypoints: int,
    test_fraction: float,
    vertex_indices: list[int] | tuple[int, ...] | None,
) -> list[dict]:
    folders = sorted(root.glob(f"*{RENDER_SUFFIX}")) + sorted((root / "synthetic_animal").glob(f"*{RENDER_SUFFIX}"))
    by_animal = {f.name[: -len(RENDER_SUFFIX)]: f for f in folders}
    if not by_animal:
        raise DatasetFormatError(
            f"{root}: neither clean_data/keypoints_{num_keypoints}.json nor *{RENDER_SUFFIX} folders found; "
            f"point root at SynAnimal's data folder"
        )
    not_found = f"{root}: no {animal}{RENDER_SUFFIX} folder; animals here: {sorted(by_animal)}"
    samples = []
    for name in _selected_animals(animal, by_animal, not_found):
        folder = by_animal[name]
        images = sorted(folder.glob("*img.png"))
        if not images:
            raise DatasetFormatError(f"{folder}: no *img.png renders; extract the {name} renders there")
        held_out = held_out_keys([f"{name}/{image.name}" for image in images], test_fraction)
        indices = _vertex_indices(name, num_keypoints, vertex_indices, folder)
        for image in images:
            kpts_path = image.with_name(image.name[: -len("img.png")] + "kpts.npy")
            if not kpts_path.is_file():
                raise DatasetFormatError(
                    f"{kpts_path}: missing keypoints of {image.name}; every *img.png needs its *kpts.npy"
                )
            try:
                vertices = np.load(kpts_path)
            except (ValueError, OSError) as error:
                raise DatasetFormatError(
                    f"{kpts_path}: not a readable .npy array ({' '.join(str(error).split())}); re-extract it"
                ) from None
            if vertices.ndim != 2 or vertices.shape[1] not in (2, 3):
                raise DatasetFormatError(
                    f"{kpts_path}: shape {list(vertices.shape)}, expected V x 3 (x, y, visibility)"
                )
            if len(vertices) == num_keypoints:
                points = vertices
            elif indices is None:
                raise DatasetFormatError(
                    f"{kpts_path}: {len(vertices)} vertices and no keypoint vertex indices known for {name!r}; "
                    f"pick animal= one of {sorted(VERTEX_INDICES_18)} or pass vertex_indices=[...] ({num_keypoints})"
                )
            elif max(indices) >= len(vertices):
                raise DatasetFormatError(
                    f"{kpts_path}: has {len(vertices)} vertices, keypoint vertex index {max(indices)} is out of range; "
                    f"pass the vertex_indices of this mesh"
                )
            else:
                points = vertices[list(indices)]
            x_min, y_min = vertices[:, :2].min(0)
            x_max, y_max = vertices[:, :2].max(0)
            samples.append(
                {
                    "image": image,
                    "keypoints": np.asarray(points, dtype=np.float32),
                    "box": (x_min, y_min, x_max, y_max),
                    "split": "test" if f"{name}/{image.name}" in held_out else "train",
                    "animal": name,
                }
            )
    return samples


def _vertex_indices(
    animal: str, num_keypoints: int, given: list[int] | tuple[int, ...] | None, folder: Path
) -> tuple[int, ...] | None:
    if given is not None:
        if len(given) != num_keypoints:
            raise DatasetFormatError(
                f"{folder}: {len(given)} vertex_indices given, the animal{num_keypoints} set needs {num_keypoints}"
            )
        return tuple(int(i) for i in given)
    if animal not in VERTEX_INDICES_18:
        return None
    indices = VERTEX_INDICES_18[animal]
    return indices if num_keypoints == 18 else tuple(indices[i] for i in ANIMAL18_TO_ANIMAL14)


def _records(
    samples: list[dict], split: str, use_occluded: bool, image_size: tuple[int, int] | None, crop_scale: float
) -> RecordCollector:
    sizes: dict[str, tuple[int, int]] = {}
    collector = RecordCollector()
    for sample in samples:
        if split != "all" and sample["split"] != split:
            continue
        image = Path(sample["image"])
        if collector.check_image(image) and image_size is None and sample["animal"] not in sizes:
            sizes[sample["animal"]] = read_image_size(image)
        width, height = image_size or sizes.get(sample["animal"], DEFAULT_RENDER_SIZE)
        points = sample["keypoints"]
        keypoints = points[:, :2].astype(np.float32)
        inside = (
            (keypoints[:, 0] >= 0) & (keypoints[:, 1] >= 0) & (keypoints[:, 0] <= width) & (keypoints[:, 1] <= height)
        )
        visible = inside if use_occluded or points.shape[1] < 3 else inside & (points[:, 2] > 0)
        x0, y0, x1, y1 = (float(v) for v in sample["box"])
        x0, x1 = np.clip([x0, x1], 0, width)
        y0, y1 = np.clip([y0, y1], 0, height)
        collector.add(
            image=image,
            keypoints=keypoints,
            visible=visible,
            bbox=np.array([x0, y0, x1 - x0, y1 - y0], dtype=np.float32),
            crop_box=square_box_around(x0, y0, x1, y1, crop_scale),
            split=sample["split"] or "unassigned",
            category=sample["animal"],
        )
    return collector

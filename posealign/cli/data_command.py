"""``posealign data``: see a dataset as the loaders see it, and turn raw releases into loadable ones.

    posealign data inspect --dataset lsp --root data/lsp [--split all] [--limit 5] [-o protocol=standard]
    posealign data inspect --dataset animalpose --root data/animal-pose --category dog
    posealign data inspect --dataset h3d --root data/H3D_crop -o task=noobject
    posealign data prepare surreal RAW_DIR OUT_DIR [--stride 10] [--split train]
    posealign data prepare human36m RAW_DIR OUT_DIR [--subject 9 --subject 11]

``inspect`` prints one JSON object per record on stdout, ``{"image", "keypoints": [[x, y, v], ...],
"bbox": [x, y, w, h]}`` (image relative to the dataset root, keypoints in the keypoint set's order, in
original pixels, v = 1 visible / 0 not), then one JSON summary line on stderr: records per split,
keypoints never visible, image files missing, image files that do not decode (``--no-decode``
skips that check). Without ``--split`` it reads every split the dataset
has; a split that cannot be read is listed under ``unavailable``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path

from posealign.cli import add_command_parser
from posealign.data.human36m import TEST_SUBJECTS, TRAIN_SUBJECTS
from posealign.data.prepare_surreal import SPLITS as SURREAL_SPLITS
from posealign.data.records import PoseDataset, PoseRecord
from posealign.data.registry import DATASET_LOADERS
from posealign.errors import DatasetFormatError, UserError

DEFAULT_SPLITS = {
    "surreal": ("train", "val", "test"),
    "lsp": ("all",),
    "synanimal": ("train", "test"),
    "tigdog": ("train", "test"),
    "animalpose": ("train", "test"),
    "coco": ("train", "val"),
    "rhd": ("train", "test"),
    "freihand": ("train", "test"),
    "h3d": ("train", "test"),
    "human36m": ("train", "test"),
}
HUMAN36M_SUBJECTS = TRAIN_SUBJECTS + TEST_SUBJECTS
# The prepare options that only SURREAL's conversion reads, with their defaults.
SURREAL_ONLY_OPTIONS = {
    "stride": 10,
    "split": None,
    "enlarge": 1.5,
    "size": None,
    "format": "jpg",
    "min_joints_inside": 12,
}
# Datasets whose loader reads the official release as it unpacks (the anchors cache no crops of
# them), and where each release's folder goes: `data prepare` says so instead of converting.
READ_AS_RELEASED = {
    "rhd": "RHD_published_v2",
    "freihand": "FreiHAND_pub_v2",
    "h3d": "H3D_crop (the folder holding annotation.json)",
}
# --category is the animal for the animal datasets, the COCO category name for COCO files.
CATEGORY_OPTION = {"synanimal": "animal", "tigdog": "animal", "animalpose": "category", "coco": "category"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command_parser(subparsers, "data", "inspect datasets, prepare raw releases", __doc__)
    actions = parser.add_subparsers(dest="action", required=True)

    inspect_parser = actions.add_parser("inspect", help="print every record as JSON lines, then a summary on stderr")
    inspect_parser.add_argument("--dataset", required=True, choices=sorted(DATASET_LOADERS))
    inspect_parser.add_argument("--root", required=True, help="the dataset's folder")
    inspect_parser.add_argument("--split", help="one split (default: every split the dataset has)")
    inspect_parser.add_argument("--category", help="animal (synanimal, tigdog, animalpose) or COCO category")
    inspect_parser.add_argument("--limit", type=int, help="print at most this many records (the summary counts all)")
    inspect_parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a loader option, e.g. protocol=standard or num_keypoints=14 (VALUE read as JSON when it parses)",
    )
    inspect_parser.add_argument("--no-decode", action="store_true", help="do not decode each image (faster)")
    inspect_parser.set_defaults(func=run_inspect)

    prepare_parser = actions.add_parser("prepare", help="convert a raw release into the layout its loader reads")
    prepare_parser.add_argument("dataset", choices=["surreal", "human36m", *READ_AS_RELEASED])
    prepare_parser.add_argument(
        "raw_dir",
        help="surreal: SURREAL's cmu folder (<split>/run{k}/<sequence>/<clip>.mp4); "
        "human36m: the parsed release (annotations/Human36M_subject*_*.json, images/)",
    )
    prepare_parser.add_argument(
        "out_dir",
        help="surreal: where <split>/run{k}/ crops and <split>/run{k}.json go; "
        "human36m: where crop_images/ and annotations/keypoints2d_{s}.json go (may be RAW_DIR)",
    )
    prepare_parser.add_argument("--stride", type=int, default=10, help="keep every N-th frame (default 10)")
    prepare_parser.add_argument("--split", choices=SURREAL_SPLITS, help="one split (default: all present)")
    prepare_parser.add_argument("--enlarge", type=float, default=1.5, help="crop side / joints' box side (default 1.5)")
    prepare_parser.add_argument(
        "--size", type=int, help="resize crops to SIZE x SIZE (default: keep the crop's pixels)"
    )
    prepare_parser.add_argument("--format", choices=["jpg", "png"], default="jpg")
    prepare_parser.add_argument(
        "--min-joints-inside", type=int, default=12, help="skip frames with fewer joints in view"
    )
    prepare_parser.add_argument(
        "--subject",
        type=int,
        action="append",
        choices=HUMAN36M_SUBJECTS,
        help="human36m: one subject (repeat for more; default: all seven)",
    )
    prepare_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    prepare_parser.set_defaults(func=run_prepare)


def run_inspect(args: argparse.Namespace) -> int:
    loader = DATASET_LOADERS[args.dataset]
    options = _loader_options(args, loader)
    splits = [args.split] if args.split else list(DEFAULT_SPLITS.get(args.dataset, ("train",)))
    counts: dict[str, int] = {}
    categories: dict[str, int] = {}
    unavailable: dict[str, str] = {}
    ever_visible = None
    seen: set[Path] = set()
    missing: list[str] = []
    unreadable: list[str] = []
    printed = 0
    dataset = None
    for split in splits:
        try:
            dataset = loader(args.root, split=split, **options)
        except DatasetFormatError as error:
            if args.split:
                raise
            unavailable[split] = str(error)
            continue
        counts[split] = len(dataset)
        for record in dataset.records:
            ever_visible = record.visible.copy() if ever_visible is None else ever_visible | record.visible
            if record.category is not None:
                categories[record.category] = categories.get(record.category, 0) + 1
            if record.image not in seen:
                seen.add(record.image)
                if not record.image.is_file():
                    missing.append(_relative(record.image, dataset, args.root))
                elif not args.no_decode and not _decodes(record.image):
                    unreadable.append(_relative(record.image, dataset, args.root))
            if args.limit is None or printed < args.limit:
                print(json.dumps(_record_line(record, dataset, args.root)))
                printed += 1
    if dataset is None:  # no split could be read: report the first reason
        raise DatasetFormatError(next(iter(unavailable.values())))
    names = dataset.keypoint_set.names
    summary = {
        "dataset": args.dataset,
        "root": str(dataset.root),
        "keypoint_set": dataset.keypoint_set.name,
        "records": counts,
        "categories": categories,
        "never_visible": [] if ever_visible is None else [n for n, v in zip(names, ever_visible, strict=True) if not v],
        "images": len(seen),
        "images_missing": len(missing),
        "first_missing": missing[0] if missing else None,
        "images_unreadable": None if args.no_decode else len(unreadable),
        "first_unreadable": unreadable[0] if unreadable else None,
        "unavailable": unavailable,
    }
    if unreadable:
        print(
            f"posealign data inspect: {len(unreadable)} image(s) do not decode, first {unreadable[0]}; "
            "replace or remove them",
            file=sys.stderr,
        )
    print(json.dumps(summary), file=sys.stderr)
    return 0


def _decodes(path: Path) -> bool:
    """Whether the image file decodes completely (a truncated or corrupt file does not), read as
    training reads it."""
    from posealign.image_crops import read_rgb_image

    try:
        read_rgb_image(path, missing_fix="", broken_fix="")
    except Exception:  # noqa: BLE001 - the reader's one-line error, or what PIL raises beyond it
        return False
    return True


def _loader_options(args: argparse.Namespace, loader: Callable[..., PoseDataset]) -> dict:
    accepted = inspect.signature(loader).parameters
    options: dict = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--option {item!r}: expected KEY=VALUE")
        if key not in accepted or key in ("root", "split"):
            known = sorted(k for k in accepted if k not in ("root", "split"))
            raise UserError(f"--option {key}: the {args.dataset} loader has no such option; options: {known}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if args.category is not None:
        if args.dataset not in CATEGORY_OPTION:
            raise UserError(f"--category: {args.dataset} has no categories; drop --category")
        options[CATEGORY_OPTION[args.dataset]] = args.category
    if "check_images" in accepted:
        options["check_images"] = False  # counted in the summary instead
    return options


def _record_line(record: PoseRecord, dataset: PoseDataset, root: str) -> dict:
    return {
        "image": _relative(record.image, dataset, root),
        "keypoints": [
            [round(float(x), 2), round(float(y), 2), int(v)]
            for (x, y), v in zip(record.keypoints, record.visible, strict=True)
        ],
        "bbox": [round(float(v), 2) for v in record.bbox],
    }


def _relative(image: Path, dataset: PoseDataset, root: str) -> str:
    for base in (dataset.root, Path(root)):
        try:
            return Path(image).relative_to(base).as_posix()
        except ValueError:
            continue
    return str(image)


def run_prepare(args: argparse.Namespace) -> int:
    if args.dataset in READ_AS_RELEASED:
        raise UserError(
            f"{args.dataset} needs no preparation: its loader reads {READ_AS_RELEASED[args.dataset]} as released; "
            f"check it with `posealign data inspect --dataset {args.dataset} --root {args.raw_dir}`"
        )
    if args.dataset == "human36m":
        return run_prepare_human36m(args)
    if args.subject:
        raise UserError("--subject: only 'prepare human36m' takes subjects; drop it")
    from posealign.data.prepare_surreal import prepare_surreal

    report = prepare_surreal(
        args.raw_dir,
        args.out_dir,
        stride=args.stride,
        split=args.split,
        enlarge=args.enlarge,
        size=args.size,
        image_format=args.format,
        min_joints_inside=args.min_joints_inside,
        progress=not args.no_progress,
    )
    for clip, message in report.failed:
        print(f"posealign data prepare: failed {clip}: {message}", file=sys.stderr)
    print(
        f"prepare surreal: {report.clips} clips, {report.converted} converted ({report.frames} frames), "
        f"{report.skipped} already done, {len(report.failed)} failed; "
        f"run files written: {len(report.run_files)}",
        file=sys.stderr,
    )
    return 1 if report.failed else 0


def run_prepare_human36m(args: argparse.Namespace) -> int:
    from posealign.data.prepare_human36m import SUBJECTS, prepare_human36m

    for key, default in SURREAL_ONLY_OPTIONS.items():
        if getattr(args, key) != default:
            raise UserError(
                f"--{key.replace('_', '-')}: only 'prepare surreal' reads it; the Human3.6M crops are fixed"
            )
    report = prepare_human36m(
        args.raw_dir, args.out_dir, subjects=tuple(args.subject or SUBJECTS), progress=not args.no_progress
    )
    print(
        f"prepare human36m: subjects {report.subjects} prepared ({report.frames} frames), "
        f"{report.skipped} already done; annotation files written: {len(report.annotation_files)}",
        file=sys.stderr,
    )
    return 0

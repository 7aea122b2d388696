"""The public entry points: write the benchmark to a folder (unless a complete copy is there) and
tell whether a folder holds a complete one.

Each image draws from its own ``default_rng((seed, split, index))``: the files do not depend on
``workers`` and a rerun writes byte-identical PNGs.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
from PIL import Image

from posealign.benchmark.body_plans import HUMAN, BodyPlan, get_body_plan
from posealign.benchmark.coco_writer import write_split_annotations
from posealign.benchmark.domains import DomainStyle
from posealign.benchmark.render import render_examples
from posealign.files import atomic_write_json

GENERATOR_VERSION = 1
# Recorded in benchmark.json: the module that held the generator when version 1 was written. Kept as
# it was so that benchmarks generated before the move still read as complete and are not regenerated.
GENERATOR_NAME = "posealign.data.synthetic_benchmark"
# ``target_val`` came last (after version 1 was released): a split's index seeds its images, so new
# splits go at the end and the images of the others stay byte-identical.
SPLITS = ("source_train", "source_test", "target_train", "target_test", "target_val")
DEFAULT_SIZES = {"source_train": 4000, "source_test": 500, "target_train": 4000, "target_test": 500, "target_val": 500}
_BATCH = 8  # images rasterised together (the result does not depend on it; small batches stay in cache)


def _render_chunk(
    root: str, split: str, indices: list[int], seed: int, image_size: int, style: DomainStyle, body: str
) -> list[tuple]:
    """Render and write the PNGs of some indices of one split; returns (index, keypoints, visible, bbox)."""
    folder = Path(root) / "images" / split
    results = []
    for start in range(0, len(indices), _BATCH):
        batch = indices[start : start + _BATCH]
        examples = render_examples(
            [np.random.default_rng((seed, SPLITS.index(split), index)) for index in batch],
            style,
            image_size,
            get_body_plan(body),
        )
        for index, example in zip(batch, examples, strict=True):
            # zlib level 1: PNG size hardly matters here, writing time does (9000 images by default).
            Image.fromarray(example.image).save(folder / f"{index:06d}.png", compress_level=1)
            results.append((index, example.keypoints, example.visible, example.bbox))
    return results


def _parameters(
    image_size: int,
    sizes: dict[str, int] | None,
    seed: int,
    body: BodyPlan,
    source_style: DomainStyle | None,
    target_style: DomainStyle | None,
) -> dict:
    """What ``benchmark.json`` records; the styles default to the body plan's."""
    source_style, target_style = source_style or body.source_style, target_style or body.target_style
    body.check_style(source_style)
    body.check_style(target_style)
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown benchmark splits {sorted(unknown)}; splits are {list(SPLITS)}")
    payload = {
        "generator": GENERATOR_NAME,
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "image_size": int(image_size),
        "sizes": {split: int(sizes[split]) for split in SPLITS},
        "keypoint_set": body.keypoint_set.name,
        "styles": {"source": asdict(source_style), "target": asdict(target_style)},
    }
    if body is not HUMAN:  # no "body" key means human, so every human benchmark.json on disk stays valid
        payload["body"] = body.name
    return json.loads(json.dumps(payload))  # tuples become lists, as when read back from the file


def benchmark_is_complete(
    root: str | Path,
    image_size: int = 64,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    workers: int = 1,
    *,
    body: str = "human",
    source_style: DomainStyle | None = None,
    target_style: DomainStyle | None = None,
) -> bool:
    """True when ``root/benchmark.json`` records a finished generation with exactly these parameters.

    Takes the keyword arguments of :func:`generate_benchmark`; ``workers`` does not change the files
    and is ignored.
    """
    parameters = _parameters(image_size, sizes, seed, get_body_plan(body), source_style, target_style)
    return _written_parameters(root) == parameters


def _written_parameters(root: str | Path) -> dict | None:
    """The parameters in ``root/benchmark.json``; None when there is no finished generation."""
    try:
        return json.loads((Path(root) / "benchmark.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _splits_added_since(written: dict | None, parameters: dict) -> list[str] | None:
    """The splits ``parameters`` has and ``written`` lacks when ``written`` is these parameters as an
    earlier generator version wrote them (fewer splits, every shared one the same size); else None.

    A benchmark generated before ``target_val`` existed is completed by rendering only that split:
    the per-image seeds of the other splits did not change, so neither did their files.
    """
    if not written or not isinstance(written.get("sizes"), dict):
        return None
    older_sizes = written["sizes"]
    added = [split for split in parameters["sizes"] if split not in older_sizes]
    same_otherwise = {**written, "sizes": None} == {**parameters, "sizes": None}
    shared_sizes_equal = all(parameters["sizes"].get(split) == size for split, size in older_sizes.items())
    return added if added and same_otherwise and shared_sizes_equal else None


def benchmark_is_upgradable(
    root: str | Path,
    image_size: int = 64,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    workers: int = 1,
    *,
    body: str = "human",
    source_style: DomainStyle | None = None,
    target_style: DomainStyle | None = None,
) -> bool:
    """True when ``root`` holds a finished benchmark with these parameters that lacks only splits
    added to the generator since (``generate_benchmark`` then renders just those)."""
    parameters = _parameters(image_size, sizes, seed, get_body_plan(body), source_style, target_style)
    return _splits_added_since(_written_parameters(root), parameters) is not None


def generate_benchmark(
    root: str | Path,
    image_size: int = 64,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    workers: int = 1,
    *,
    body: str = "human",
    source_style: DomainStyle | None = None,
    target_style: DomainStyle | None = None,
) -> Path:
    """Write the benchmark into ``root`` (layout in the :mod:`posealign.benchmark` docstring) unless it is already complete.

    ``body`` names the body plan (``BODY_PLANS``: "human", "quadruped", "hand"); the styles default to its
    source and target domains. ``sizes`` overrides the number of images of some splits (the others
    keep ``DEFAULT_SIZES``).
    ``workers > 1`` renders in a process pool; the files are identical either way.
    Regenerating deletes only what the generator writes: ``images/<split>/``, the annotation files
    and ``benchmark.json``. A benchmark that lacks only splits added to the generator since it was
    made (``target_val``) is upgraded in place: only those splits are rendered.
    """
    root = Path(root)
    plan = get_body_plan(body)
    parameters = _parameters(image_size, sizes, seed, plan, source_style, target_style)
    source_style, target_style = source_style or plan.source_style, target_style or plan.target_style
    written = _written_parameters(root)
    if written == parameters:
        return root
    added = _splits_added_since(written, parameters)
    splits = [split for split in SPLITS if added is None or split in added]
    marker = root / "benchmark.json"
    marker.unlink(missing_ok=True)  # from here on the folder reads as incomplete until the marker is rewritten
    for split in splits:
        shutil.rmtree(root / "images" / split, ignore_errors=True)
        (root / "images" / split).mkdir(parents=True)

    jobs = []
    for split in splits:
        count, style = parameters["sizes"][split], source_style if split.startswith("source") else target_style
        chunk = max(1, min(250, -(-count // max(workers, 1))))
        jobs += [
            (str(root), split, list(range(start, min(start + chunk, count))), seed, image_size, style, body)
            for start in range(0, count, chunk)
        ]
    if workers > 1:
        # fork where there is one: spawn would re-run the caller's __main__ (``python -m posealign``
        # has no main guard); the workers only use numpy, so fork's caveats about threads do not bite.
        context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            chunks = list(pool.map(_render_chunk, *zip(*jobs, strict=True)))
    else:
        chunks = [_render_chunk(*job) for job in jobs]

    for split in splits:
        rendered = sorted(
            (row for job, rows in zip(jobs, chunks, strict=True) if job[1] == split for row in rows),
            key=lambda row: row[0],
        )
        write_split_annotations(root, split, rendered, image_size, plan.keypoint_set)

    atomic_write_json(marker, parameters)
    return root

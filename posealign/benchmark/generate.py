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

from posealign.benchmark.coco_writer import write_split_annotations
from posealign.benchmark.domains import SOURCE_STYLE, TARGET_STYLE, DomainStyle
from posealign.benchmark.render import render_examples
from posealign.files import atomic_write_json
from posealign.keypoints import BODY16

GENERATOR_VERSION = 1
# Recorded in benchmark.json: the module that held the generator when version 1 was written. Kept as
# it was so that benchmarks generated before the move still read as complete and are not regenerated.
GENERATOR_NAME = "posealign.data.synthetic_benchmark"
SPLITS = ("source_train", "source_test", "target_train", "target_test")
DEFAULT_SIZES = {"source_train": 4000, "source_test": 500, "target_train": 4000, "target_test": 500}
_BATCH = 8  # images rasterised together (the result does not depend on it; small batches stay in cache)


def _render_chunk(
    root: str, split: str, indices: list[int], seed: int, image_size: int, style: DomainStyle
) -> list[tuple]:
    """Render and write the PNGs of some indices of one split; returns (index, keypoints, visible, bbox)."""
    folder = Path(root) / "images" / split
    results = []
    for start in range(0, len(indices), _BATCH):
        batch = indices[start : start + _BATCH]
        examples = render_examples(
            [np.random.default_rng((seed, SPLITS.index(split), index)) for index in batch], style, image_size
        )
        for index, example in zip(batch, examples, strict=True):
            # zlib level 1: PNG size hardly matters here, writing time does (9000 images by default).
            Image.fromarray(example.image).save(folder / f"{index:06d}.png", compress_level=1)
            results.append((index, example.keypoints, example.visible, example.bbox))
    return results


def _parameters(
    image_size: int, sizes: dict[str, int] | None, seed: int, source_style: DomainStyle, target_style: DomainStyle
) -> dict:
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
        "keypoint_set": BODY16.name,
        "styles": {"source": asdict(source_style), "target": asdict(target_style)},
    }
    return json.loads(json.dumps(payload))  # tuples become lists, as when read back from the file


def benchmark_is_complete(
    root: str | Path,
    image_size: int = 64,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    workers: int = 1,
    *,
    source_style: DomainStyle = SOURCE_STYLE,
    target_style: DomainStyle = TARGET_STYLE,
) -> bool:
    """True when ``root/benchmark.json`` records a finished generation with exactly these parameters.

    Takes the keyword arguments of :func:`generate_benchmark`; ``workers`` does not change the files
    and is ignored.
    """
    try:
        written = json.loads((Path(root) / "benchmark.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return written == _parameters(image_size, sizes, seed, source_style, target_style)


def generate_benchmark(
    root: str | Path,
    image_size: int = 64,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    workers: int = 1,
    *,
    source_style: DomainStyle = SOURCE_STYLE,
    target_style: DomainStyle = TARGET_STYLE,
) -> Path:
    """Write the benchmark into ``root`` (layout in the :mod:`posealign.benchmark` docstring) unless it is already complete.

    ``sizes`` overrides the number of images of some splits (the others keep ``DEFAULT_SIZES``).
    ``workers > 1`` renders in a process pool; the files are identical either way.
    Regenerating deletes only what the generator writes: ``images/<split>/``, the annotation files
    and ``benchmark.json``.
    """
    root = Path(root)
    parameters = _parameters(image_size, sizes, seed, source_style, target_style)
    if benchmark_is_complete(root, image_size, sizes, seed, source_style=source_style, target_style=target_style):
        return root
    marker = root / "benchmark.json"
    marker.unlink(missing_ok=True)  # from here on the folder reads as incomplete until the marker is rewritten
    for split in SPLITS:
        shutil.rmtree(root / "images" / split, ignore_errors=True)
        (root / "images" / split).mkdir(parents=True)

    jobs = []
    for split in SPLITS:
        count, style = parameters["sizes"][split], source_style if split.startswith("source") else target_style
        chunk = max(1, min(250, -(-count // max(workers, 1))))
        jobs += [
            (str(root), split, list(range(start, min(start + chunk, count))), seed, image_size, style)
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

    for split in SPLITS:
        rendered = sorted(
            (row for job, rows in zip(jobs, chunks, strict=True) if job[1] == split for row in rows),
            key=lambda row: row[0],
        )
        write_split_annotations(root, split, rendered, image_size)

    atomic_write_json(marker, parameters)
    return root

"""The built-in benchmark: deterministic, loadable as COCO, labels on the figure, two distinct domains."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from posealign.benchmark.domains import SOURCE_STYLE, TARGET_STYLE
from posealign.benchmark.generate import SPLITS, benchmark_is_complete, benchmark_is_upgradable, generate_benchmark
from posealign.benchmark.render import render_example, render_examples
from posealign.benchmark.scene import sample_scene
from posealign.benchmark.task import ensure_benchmark
from posealign.config import load_config
from posealign.data.coco import load_coco
from posealign.keypoints import BODY16

SIZE = 64
TINY = {"source_train": 6, "source_test": 3, "target_train": 6, "target_test": 3, "target_val": 3}
LIMB_KEYPOINTS = (0, 1, 4, 5, 10, 11, 14, 15)  # ankles, knees, wrists, elbows
# sha256 (first 16 hex digits) of the decoded pixels of each split's images in index order, and of
# each split's annotation file, for TINY at seed 0. Recorded from the generator as first released
# (posealign.data.synthetic_benchmark); the target splits include JPEG round trips. A change here
# means every benchmark number changes: only update these after deciding that is intended.
FINGERPRINTS = {
    "source_train": ("fa3468c933ae2f8a", "9587d3485ad69044"),
    "source_test": ("d9c2049c70ce97a0", "3e7e50e5485516e8"),
    "target_train": ("e7bad20046fcfb23", "f7f50f8c2b24fe2f"),
    "target_test": ("34b67c36eb56532d", "33073367c3c918c9"),
    "target_val": ("68a422d6acad3a48", "e84bfe4185f63380"),  # recorded when the split was added
}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rng(split: str, index: int, seed: int = 0) -> np.random.Generator:
    return np.random.default_rng((seed, SPLITS.index(split), index))


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory) -> Path:
    return generate_benchmark(tmp_path_factory.mktemp("benchmark"), image_size=SIZE, sizes=TINY, seed=0)


def test_generation_is_byte_identical_on_rerun(benchmark, tmp_path):
    again = generate_benchmark(tmp_path / "again", image_size=SIZE, sizes=TINY, seed=0)
    first, second = _files(benchmark), _files(again)
    assert first.keys() == second.keys()
    assert all(first[name] == second[name] for name in first)
    assert sum(name.endswith(".png") for name in first) == sum(TINY.values())


def test_pixels_and_annotations_match_the_recorded_fingerprints(benchmark):
    assert split_fingerprints(benchmark) == FINGERPRINTS


def split_fingerprints(root: Path) -> dict[str, tuple[str, str]]:
    """Per split: sha256 (16 hex digits) of the decoded pixels of its PNGs in order, and of its annotation file."""
    found = {}
    for split in SPLITS:
        pixels = hashlib.sha256()
        for png in sorted((root / "images" / split).glob("*.png")):
            with Image.open(png) as image:
                pixels.update(np.asarray(image.convert("RGB")).tobytes())
        annotations = hashlib.sha256((root / "annotations" / f"{split}.json").read_bytes())
        found[split] = (pixels.hexdigest()[:16], annotations.hexdigest()[:16])
    return found


def test_images_do_not_depend_on_batching():
    # generate_benchmark splits work into chunks by worker count; each image must depend only on its own generator.
    for style, split in ((SOURCE_STYLE, "source_train"), (TARGET_STYLE, "target_train")):
        batched = render_examples([_rng(split, i) for i in range(5)], style, SIZE)
        for index, example in enumerate(batched):
            alone = render_example(_rng(split, index), style, SIZE)
            assert np.array_equal(example.image, alone.image)
            assert np.array_equal(example.keypoints, alone.keypoints)


def test_every_split_loads_as_coco_with_body16(benchmark):
    for split in SPLITS:
        dataset = load_coco(benchmark, split, keypoint_set="body16", crop="image")
        assert len(dataset) == TINY[split]
        assert dataset.keypoint_set is BODY16
        for record in dataset.records:
            assert record.keypoints.shape == (16, 2) and record.visible.shape == (16,)
            assert np.allclose(record.crop_box, [0, 0, SIZE, SIZE])
            x, y, w, h = record.bbox
            assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= SIZE and y + h <= SIZE
            with Image.open(record.image) as image:
                assert image.mode == "RGB" and image.size == (SIZE, SIZE)
    coco = json.loads((benchmark / "annotations" / "source_train.json").read_text())
    assert coco["categories"] == [BODY16.to_coco_category(1)]
    assert {v for a in coco["annotations"] for v in a["keypoints"][2::3]} <= {0, 2}


def test_labeled_keypoints_lie_on_the_painted_figure(benchmark):
    dataset = load_coco(benchmark, "source_train", keypoint_set="body16", crop="image")
    differences = []
    for index, record in enumerate(dataset.records):
        example = render_example(_rng("source_train", index), SOURCE_STYLE, SIZE)
        background = sample_scene(_rng("source_train", index), SOURCE_STYLE, SIZE).background
        pixels = np.asarray(Image.open(record.image).convert("RGB")).astype(int)
        assert np.array_equal(pixels, example.image)
        for k in LIMB_KEYPOINTS:
            if not record.visible[k]:
                continue
            x, y = np.rint(record.keypoints[k]).astype(int)
            assert example.figure_alpha[y, x] > 0.5, f"image {index}: {BODY16.names[k]} is off the figure"
            differences.append(np.abs(pixels[y, x] - background[:, y, x] * 255).sum())
    assert len(differences) >= 20
    assert np.mean(np.array(differences) > 30) > 0.9  # saturated limbs stand out from the plain background


def test_source_and_target_differ_in_image_statistics():
    def statistics(style, split):
        images = [render_example(_rng(split, i), style, SIZE).image.astype(float) / 255 for i in range(12)]
        roughness = np.mean([np.abs(np.diff(im, axis=0)).mean() + np.abs(np.diff(im, axis=1)).mean() for im in images])
        saturation = np.mean([(im.max(-1) - im.min(-1)).mean() for im in images])
        # Fine texture: what is left after a 3x3 box blur (flat regions leave nothing).
        residual = np.mean(
            [
                np.abs(
                    im[1:-1, 1:-1]
                    - sum(im[1 + dy : SIZE - 1 + dy, 1 + dx : SIZE - 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
                    / 9
                ).mean()
                for im in images
            ]
        )
        return roughness, saturation, residual

    source, target = statistics(SOURCE_STYLE, "source_train"), statistics(TARGET_STYLE, "target_train")
    assert target[0] > 2 * source[0] and target[2] > 1.5 * source[2]  # textured, cluttered, noisy vs flat
    assert source[1] > target[1]  # saturated flat colours vs muted clothing and skin


def test_skips_when_complete_and_regenerates_when_parameters_change(tmp_path):
    root = generate_benchmark(tmp_path, image_size=SIZE, sizes=TINY, seed=0)
    assert benchmark_is_complete(root, image_size=SIZE, sizes=TINY, seed=0)
    assert not (root / "benchmark.json.tmp").exists()
    marker = json.loads((root / "benchmark.json").read_text())
    assert marker["seed"] == 0 and marker["image_size"] == SIZE and marker["sizes"] == TINY

    png = root / "images" / "target_train" / "000000.png"
    stamp = png.stat().st_mtime_ns
    png.write_bytes(b"left alone")  # a complete benchmark is not touched again
    generate_benchmark(root, image_size=SIZE, sizes=TINY, seed=0)
    assert png.read_bytes() == b"left alone"

    assert not benchmark_is_complete(root, image_size=SIZE, sizes=TINY, seed=1)
    smaller = {**TINY, "target_train": 2}
    generate_benchmark(root, image_size=SIZE, sizes=smaller, seed=1)
    assert benchmark_is_complete(root, image_size=SIZE, sizes=smaller, seed=1)
    assert png.read_bytes() != b"left alone" and png.stat().st_mtime_ns != stamp
    assert sorted(p.name for p in (root / "images" / "target_train").iterdir()) == ["000000.png", "000001.png"]
    assert len(load_coco(root, "target_train", keypoint_set="body16", crop="image")) == 2

    changed = dataclasses.replace(TARGET_STYLE, blur_sigma=(0.0, 0.0))
    assert not benchmark_is_complete(root, image_size=SIZE, sizes=smaller, seed=1, target_style=changed)
    (root / "benchmark.json").unlink()  # an interrupted run: no marker, not complete
    assert not benchmark_is_complete(root, image_size=SIZE, sizes=smaller, seed=1)


def test_a_benchmark_lacking_only_target_val_gets_only_that_split(tmp_path):
    # What the generator wrote before target_val existed: four splits, the same files, no target_val.
    root = generate_benchmark(tmp_path / "benchmark", image_size=SIZE, sizes=TINY, seed=0)
    marker = json.loads((root / "benchmark.json").read_text())
    del marker["sizes"]["target_val"]
    (root / "benchmark.json").write_text(json.dumps(marker))
    shutil.rmtree(root / "images" / "target_val")
    (root / "annotations" / "target_val.json").unlink()
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in root.rglob("*") if path.is_file()}
    assert not benchmark_is_complete(root, image_size=SIZE, sizes=TINY, seed=0)
    assert benchmark_is_upgradable(root, image_size=SIZE, sizes=TINY, seed=0)

    config = load_config("source_only", "benchmark", [f"data.benchmark_root={root}", f"data.benchmark_sizes={TINY}"])
    ensure_benchmark(config)  # no "other parameters" error: the folder is upgraded in place
    assert benchmark_is_complete(root, image_size=SIZE, sizes=TINY, seed=0)
    for path, (content, stamp) in before.items():
        if path.name != "benchmark.json":
            assert path.read_bytes() == content and path.stat().st_mtime_ns == stamp, path
    assert len(load_coco(root, "target_val", keypoint_set="body16", crop="image")) == TINY["target_val"]
    fresh = generate_benchmark(tmp_path / "fresh", image_size=SIZE, sizes=TINY, seed=0)
    assert _files(root) == _files(fresh)

    # Another size of a split that was there is not an upgrade.
    marker["sizes"]["target_test"] = 2
    (root / "benchmark.json").write_text(json.dumps(marker))
    assert not benchmark_is_upgradable(root, image_size=SIZE, sizes=TINY, seed=0)


def test_keypoints_outside_the_image_get_visibility_zero(tmp_path):
    # Large figures allowed to stick far out of the frame.
    spilling = dataclasses.replace(SOURCE_STYLE, figure_height=(1.1, 1.3), position_slack=0.4)
    sizes = {"source_train": 8, "source_test": 1, "target_train": 1, "target_test": 1, "target_val": 1}
    root = generate_benchmark(tmp_path, image_size=SIZE, sizes=sizes, source_style=spilling)
    dataset = load_coco(root, "source_train", keypoint_set="body16", crop="image")
    keypoints = np.stack([r.keypoints for r in dataset.records])
    visible = np.stack([r.visible for r in dataset.records])
    inside = ((keypoints >= 0) & (keypoints <= SIZE - 1)).all(-1)
    assert (~inside).sum() > 0 and inside.sum() > 0
    assert np.array_equal(visible, inside)
    coco = json.loads((root / "annotations" / "source_train.json").read_text())
    flags = np.array([a["keypoints"][2::3] for a in coco["annotations"]])
    assert np.array_equal(flags == 2, inside) and set(np.unique(flags)) == {0, 2}

"""The quadruped benchmark (body plan ``quadruped``, Animal14): deterministic, loadable as COCO,
shaped like a four-legged animal, two distinct domains, and a task preset that generates and trains."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from test_synthetic_benchmark import split_fingerprints

from posealign.benchmark.body_plans import HUMAN, QUADRUPED
from posealign.benchmark.draws import Draws
from posealign.benchmark.generate import SPLITS, benchmark_is_complete, generate_benchmark
from posealign.benchmark.quadruped_pose import sample_pose
from posealign.benchmark.render import render_example, render_examples
from posealign.benchmark.task import ensure_benchmark
from posealign.cli import main
from posealign.config import load_config
from posealign.data.coco import load_coco
from posealign.errors import UserError
from posealign.keypoints import ANIMAL14

SIZE = 64
TINY = {"source_train": 6, "source_test": 3, "target_train": 6, "target_test": 3, "target_val": 3}
SOURCE, TARGET = QUADRUPED.source_style, QUADRUPED.target_style
# sha256 (first 16 hex digits) of the decoded pixels of each split's images in index order, and of
# each split's annotation file, for TINY at seed 0, as in test_synthetic_benchmark. A change here
# means every quadruped benchmark number changes: only update these after deciding that is intended.
FINGERPRINTS = {
    "source_train": ("1991c040fd6aa868", "348b7e56e782c370"),
    "source_test": ("0765bc06c61881e2", "6905e3dbd2fbe3ce"),
    "target_train": ("1732df47aa7307d6", "54cafae09bebbecc"),
    "target_test": ("9189aed8ef045cb2", "8a5e5c9d759962a9"),
    "target_val": ("9aa6d68addceb13e", "82e926431d334f12"),
}
# A side view with nothing turned: torso level, no yaw or elevation, no in-plane rotation.
UPRIGHT = dataclasses.replace(
    SOURCE, rotation_deg=0.0, yaw_deg=(0.0, 0.0), elevation_deg=(0.0, 0.0), torso_pitch_deg=0.0
)


def _rng(split: str, index: int, seed: int = 0) -> np.random.Generator:
    return np.random.default_rng((seed, SPLITS.index(split), index))


def _index(name: str) -> int:
    return ANIMAL14.names.index(name)


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory) -> Path:
    return generate_benchmark(tmp_path_factory.mktemp("quadruped"), image_size=SIZE, sizes=TINY, body="quadruped")


def test_pixels_and_annotations_match_the_recorded_fingerprints(benchmark):
    assert split_fingerprints(benchmark) == FINGERPRINTS


def test_rendering_is_deterministic_and_does_not_depend_on_batching():
    for style, split in ((SOURCE, "source_train"), (TARGET, "target_train")):
        batched = render_examples([_rng(split, i) for i in range(4)], style, SIZE, QUADRUPED)
        for index, example in enumerate(batched):
            alone = render_example(_rng(split, index), style, SIZE, QUADRUPED)
            assert np.array_equal(example.image, alone.image)
            assert np.array_equal(example.keypoints, alone.keypoints)
            assert example.keypoints.shape == (14, 2) and example.visible.shape == (14,)
            inside = ((example.keypoints >= 0) & (example.keypoints <= SIZE - 1)).all(1)
            assert np.array_equal(example.visible, inside)


def test_every_split_loads_as_coco_with_animal14(benchmark):
    for split in SPLITS:
        dataset = load_coco(benchmark, split, keypoint_set="animal14", crop="image")
        assert len(dataset) == TINY[split] and dataset.keypoint_set is ANIMAL14
        for record in dataset.records:
            assert record.keypoints.shape == (14, 2) and record.visible.shape == (14,)
            assert np.allclose(record.crop_box, [0, 0, SIZE, SIZE])
    coco = json.loads((benchmark / "annotations" / "target_test.json").read_text())
    assert coco["categories"] == [ANIMAL14.to_coco_category(1)]
    marker = json.loads((benchmark / "benchmark.json").read_text())
    assert marker["body"] == "quadruped" and marker["keypoint_set"] == "animal14"
    assert benchmark_is_complete(benchmark, image_size=SIZE, sizes=TINY, body="quadruped")
    assert not benchmark_is_complete(benchmark, image_size=SIZE, sizes=TINY)  # not the human benchmark


def test_a_source_figure_looks_like_a_quadruped():
    hooves = [_index(f"{side}_{end}_hoof") for side in ("left", "right") for end in ("front", "back")]
    elbows = [_index(f"{side}_{end}_elbow") for side in ("left", "right") for end in ("front", "back")]
    eyes = [_index("left_eye"), _index("right_eye")]
    on_figure, in_box = [], []
    for index in range(12):
        example = render_example(_rng("source_train", index), UPRIGHT, SIZE, QUADRUPED)
        points = example.keypoints
        # Standing upright: hooves below the elbows (the torso's underside), eyes above them.
        assert points[hooves, 1].min() > points[elbows, 1].max()
        assert points[eyes, 1].max() < points[elbows, 1].min()
        # The head is at one end: the eyes lie beyond the front elbows, away from the hind ones.
        front = points[[_index("left_front_elbow"), _index("right_front_elbow")], 0].mean()
        back = points[[_index("left_back_elbow"), _index("right_back_elbow")], 0].mean()
        assert (points[eyes, 0].mean() - front) * (front - back) > 0
        x, y, w, h = example.bbox
        for px, py in np.rint(points).astype(int):
            on_figure.append(example.figure_alpha[py, px] > 0.5)
            in_box.append(x <= px < x + w and y <= py < y + h)
        assert w > h  # a side view is wider than tall
    assert np.mean(on_figure) > 0.9 and np.mean(in_box) > 0.95


def test_left_and_right_follow_the_side_towards_the_camera():
    # Facing right the animal shows its right side: the near legs are the right ones.
    for index in range(20):
        draws = Draws(_rng("source_train", index))
        pose = sample_pose(draws, UPRIGHT)
        muzzle, rump = pose.points["muzzle"], pose.points["buttock"]
        facing_right = muzzle.real > rump.real
        assert pose.near_side == ("right" if facing_right else "left")
        keypoints = pose.animal14_keypoints()
        assert keypoints[_index(f"{pose.near_side}_front_knee")] == pose.points["near_front_knee"]


def test_source_and_target_differ_in_image_statistics():
    def statistics(style, split):
        images = [render_example(_rng(split, i), style, SIZE, QUADRUPED).image.astype(float) / 255 for i in range(12)]
        roughness = np.mean([np.abs(np.diff(im, axis=0)).mean() + np.abs(np.diff(im, axis=1)).mean() for im in images])
        saturation = np.mean([(im.max(-1) - im.min(-1)).mean() for im in images])
        return roughness, saturation

    source, target = statistics(SOURCE, "source_train"), statistics(TARGET, "target_train")
    assert target[0] > 2 * source[0]  # fur, texture, clutter and noise against flat colours
    assert source[1] > target[1]  # vivid flat hues against coats


def test_a_style_of_another_body_plan_is_refused():
    with pytest.raises(TypeError, match="QuadrupedStyle"):
        render_example(_rng("source_train", 0), HUMAN.source_style, SIZE, QUADRUPED)


def test_the_task_preset_generates_the_quadruped_benchmark_and_trains(tmp_path, capsys):
    config = load_config("source_only", "benchmark_quadruped", [f"run.out={tmp_path / 'run'}"])
    assert config.data.benchmark_body == "quadruped" and config.data.keypoint_set == "animal14"
    assert config.data.benchmark_root == str(tmp_path / "benchmark_quadruped")
    assert {spec.options.keypoint_set for spec in (config.data.source, *config.data.eval.values())} == {"animal14"}
    assert list(config.data.eval) == ["target", "target_val", "source"]
    human = load_config("source_only", "benchmark", [f"run.out={tmp_path / 'run'}"])
    for section in ("model", "train", "optim", "align", "mean_teacher"):  # a run costs what a human one costs
        assert config[section] == human[section], section

    sizes = "{source_train: 4, source_test: 2, target_train: 4, target_test: 2, target_val: 2}"
    argv = ["train", "--preset", "source_only", "--task", "benchmark_quadruped", "--out", str(tmp_path / "run")]
    argv += [f"data.benchmark_sizes={sizes}", "train.batch_size=2", "train.pretrain_steps=1", "run.progress=false"]
    argv += ["run.tensorboard=false", "model.deconv_channels=8", "data.image_size=32", "data.heatmap_size=32"]
    assert main(argv) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["target"]["groups"]) == {"Eye", "Hoof", "Knee", "Elbow"}
    assert {"target", "target_val", "source"} <= set(results)
    marker = json.loads((tmp_path / "benchmark_quadruped" / "benchmark.json").read_text())
    assert marker["body"] == "quadruped"
    assert "Hoof" in capsys.readouterr().out  # the Animal14 table


def test_a_body_plan_that_does_not_draw_the_configured_keypoints_is_refused(tmp_path):
    config = load_config("source_only", "benchmark", [f"run.out={tmp_path / 'run'}", "data.benchmark_body=quadruped"])
    with pytest.raises(UserError, match="animal14"):
        ensure_benchmark(config)
    assert not (tmp_path / "benchmark").exists()

"""The hand benchmark (body plan ``hand``, Hand21): geometry of the procedural hand, visibility,
determinism, two distinct domains, and ``posealign demo --task benchmark_hand`` training on it."""

from __future__ import annotations

import dataclasses
import json
from itertools import pairwise

import numpy as np
import pytest
from test_synthetic_benchmark import split_fingerprints
from tiny_runs import TINY_RUN

from posealign.benchmark.body_plans import HAND, QUADRUPED
from posealign.benchmark.draws import Draws
from posealign.benchmark.generate import SPLITS, benchmark_is_complete, generate_benchmark
from posealign.benchmark.hand_pose import _SEGMENTS, FINGERS, sample_pose
from posealign.benchmark.render import render_example, render_examples
from posealign.cli import main
from posealign.config import load_config
from posealign.data.coco import load_coco
from posealign.keypoints import HAND21

SIZE = 64
TINY = {"source_train": 6, "source_test": 3, "target_train": 6, "target_test": 3, "target_val": 3}
# sha256 (first 16 hex digits) of the decoded pixels of each split's images in index order, and of
# each split's annotation file, for TINY at seed 0, as in test_synthetic_benchmark. A change here
# means every hand benchmark number changes: only update these after deciding that is intended.
FINGERPRINTS = {
    "source_train": ("af5d0d107876ae83", "a089272d9ed7290f"),
    "source_test": ("d9ff914e8527d1f8", "653a4291c5426ad5"),
    "target_train": ("ec006ad0166da7a4", "0b70afa2e99048eb"),
    "target_test": ("06e35d07071a93b2", "a6d11ff3a765d382"),
    "target_val": ("3dce370852aa94bd", "d36fd9b690a5e7ed"),
}
SOURCE, TARGET = HAND.source_style, HAND.target_style
# An open hand seen flat: no turn, tilt, spread noise aside, or flexion.
FLAT = dataclasses.replace(
    SOURCE,
    rotation_deg=0.0,
    yaw_deg=(0.0, 0.0),
    pitch_deg=(0.0, 0.0),
    back_prob=0.0,
    proportion_jitter=0.0,
    finger_flex_deg=(0.0, 0.0),
    curl_prob=0.0,
    thumb_opposition_deg=(0.0, 0.0),
    thumb_flex_deg=(0.0, 0.0),
)


def _rng(split: str, index: int, seed: int = 0) -> np.random.Generator:
    return np.random.default_rng((seed, SPLITS.index(split), index))


def _chains(keypoints) -> list[list[int]]:
    """Each finger's keypoint indices from the wrist: wrist, MCP, PIP, DIP, tip."""
    return [
        [0, *(HAND21.names.index(f"{finger}_{joint}") for joint in ("mcp", "pip", "dip", "tip"))] for finger in FINGERS
    ]


def test_the_generated_files_match_the_recorded_fingerprints_and_load_as_hand21(tmp_path):
    root = generate_benchmark(tmp_path, image_size=SIZE, sizes=TINY, body="hand")
    assert split_fingerprints(root) == FINGERPRINTS
    dataset = load_coco(root, "target_val", keypoint_set="hand21", crop="image")
    assert len(dataset) == TINY["target_val"] and dataset.keypoint_set is HAND21
    assert json.loads((root / "benchmark.json").read_text())["body"] == "hand"
    assert benchmark_is_complete(root, image_size=SIZE, sizes=TINY, body="hand")
    assert not benchmark_is_complete(root, image_size=SIZE, sizes=TINY, body="quadruped")


def test_the_keypoints_are_hand21_in_the_anchors_order():
    assert HAND.keypoint_set is HAND21
    pose = sample_pose(Draws(_rng("source_train", 0)), SOURCE)
    keypoints = pose.hand21_keypoints()
    assert len(keypoints) == 21 and keypoints[0] == pose.points["wrist"]
    for f, finger in enumerate(FINGERS):
        for j, joint in enumerate(("mcp", "pip", "dip", "tip")):
            assert keypoints[1 + 4 * f + j] == pose.points[f"{finger}_{joint}"]
    assert {name: HAND21.groups[name] for name in ("MCP", "Fingertip")} == {
        "MCP": (1, 5, 9, 13, 17),
        "Fingertip": (4, 8, 12, 16, 20),
    }


def test_an_open_flat_hand_has_straight_fingers_chained_to_their_mcps():
    for index in range(10):
        pose = sample_pose(Draws(_rng("source_train", index)), FLAT)
        points = pose.hand21_keypoints()
        for finger, chain in zip(FINGERS, _chains(points), strict=True):
            wrist, *joints = (points[k] for k in chain)
            segments = [abs(b - a) for a, b in pairwise(joints)]
            # Unflexed and unturned: each segment its full length, all three in one straight line.
            assert np.allclose(segments, _SEGMENTS[finger], rtol=0.02), finger
            assert abs(joints[3] - joints[0]) == pytest.approx(sum(segments), rel=1e-6), finger
            # Pointing away from the wrist: every joint further from it than the one before.
            assert all(abs(b - wrist) > abs(a - wrist) for a, b in pairwise(joints)), finger
        # Upright (image y down): the MCPs of the four fingers above the wrist, the tips above the MCPs.
        mcps = [points[k] for k in (5, 9, 13, 17)]
        tips = [points[k] for k in (8, 12, 16, 20)]
        assert all(m.imag < points[0].imag - 0.35 for m in mcps)
        assert all(t.imag < m.imag - 0.2 for t, m in zip(tips, mcps, strict=True))
        # Thumb (its anatomical MCP, keypoint 2) to little finger in order across the palm, whichever
        # hand (mirror) it is.
        across = np.array([m.real for m in [points[2], *mcps]])
        assert (np.diff(across) > 0).all() or (np.diff(across) < 0).all()


def test_curled_fingers_bring_their_tips_back_towards_the_wrist():
    fist = dataclasses.replace(FLAT, curl_prob=1.0, curl_flex_deg=(80.0, 90.0))
    for index in range(10):
        pose = sample_pose(Draws(_rng("source_train", index)), fist)
        points = pose.hand21_keypoints()
        for finger, chain in list(zip(FINGERS, _chains(points), strict=True))[1:]:
            wrist, mcp, pip, dip, tip = (points[k] for k in chain)
            assert abs(tip - wrist) < abs(pip - wrist), finger
            # Seen from the palm, the curled finger comes towards the camera: drawn over the palm.
            assert pose.depth[f"{finger}_pip"] > pose.depth[f"{finger}_mcp"] + 0.1


def test_rendering_is_deterministic_by_seed_and_marks_keypoints_outside_the_image():
    for style, split in ((SOURCE, "source_train"), (TARGET, "target_train")):
        batched = render_examples([_rng(split, i) for i in range(6)], style, SIZE, HAND)
        for index, example in enumerate(batched):
            alone = render_example(_rng(split, index), style, SIZE, HAND)
            assert np.array_equal(example.image, alone.image)
            assert np.array_equal(example.keypoints, alone.keypoints)
            assert example.keypoints.shape == (21, 2) and example.visible.shape == (21,)
            inside = ((example.keypoints >= 0) & (example.keypoints <= SIZE - 1)).all(1)
            assert np.array_equal(example.visible, inside)
            if style is SOURCE:  # no position slack in the source domain: the whole hand is in frame
                assert inside.all()
        other = render_example(_rng(split, 0, seed=1), style, SIZE, HAND)
        assert not np.array_equal(other.image, batched[0].image)
    # With slack, a hand that sticks out of the image has its outside keypoints marked invisible.
    slack = dataclasses.replace(TARGET, position_slack=0.3)
    examples = render_examples([_rng("target_train", i) for i in range(24)], slack, SIZE, HAND)
    assert any(not example.visible.all() for example in examples)


def test_the_keypoints_lie_on_the_drawn_hand():
    on_hand = []
    for index in range(12):
        example = render_example(_rng("source_train", index), SOURCE, SIZE, HAND)
        for px, py in np.rint(example.keypoints).astype(int):
            on_hand.append(example.figure_alpha[py, px] > 0.5)
    assert np.mean(on_hand) > 0.95


def test_source_and_target_differ_in_image_statistics():
    def statistics(style, split):
        examples = [render_example(_rng(split, i), style, SIZE, HAND) for i in range(12)]
        images = [example.image.astype(float) / 255 for example in examples]
        roughness = np.mean([np.abs(np.diff(im, axis=0)).mean() + np.abs(np.diff(im, axis=1)).mean() for im in images])
        # The hand's own pixels: vivid hues against skin tones.
        on_hand = [im[example.figure_alpha > 0.9] for im, example in zip(images, examples, strict=True)]
        saturation = np.mean([(pixels.max(-1) - pixels.min(-1)).mean() for pixels in on_hand])
        return roughness, saturation

    source, target = statistics(SOURCE, "source_train"), statistics(TARGET, "target_train")
    assert target[0] > 2 * source[0]  # skin grain, clutter and noise against flat colours
    assert source[1] > 2 * target[1]
    with pytest.raises(TypeError, match="HandStyle"):
        render_example(_rng("source_train", 0), QUADRUPED.source_style, SIZE, HAND)


def test_the_demo_trains_the_hand_task_and_keeps_a_folder_to_one_benchmark(tmp_path, capsys):
    config = load_config("source_only", "benchmark_hand", [f"run.out={tmp_path / 'run'}"])
    assert config.data.benchmark_body == "hand" and config.data.keypoint_set == "hand21"
    assert {spec.options.keypoint_set for spec in (config.data.source, *config.data.eval.values())} == {"hand21"}
    hand = load_config("daml", "benchmark_hand", [f"run.out={tmp_path / 'run'}"])
    human = load_config("daml", "benchmark", [f"run.out={tmp_path / 'run'}"])
    assert hand.align == human.align  # the human benchmark's method settings ...
    # ... with a wider head and twice the schedule, the EMA's horizon scaled with it
    differ = {
        ("model", "deconv_channels"): (32, 64),
        ("train", "pretrain_steps"): (400, 800),
        ("train", "adapt_steps"): (120, 240),
        ("optim", "milestones"): ([350], [700]),
        ("mean_teacher", "momentum"): (0.98, 0.99),
    }
    for section in ("model", "train", "optim", "mean_teacher"):
        for key in human[section]:
            expected = differ.get((section, key), (human[section][key],) * 2)
            assert (human[section][key], hand[section][key]) == expected, (section, key)

    out = tmp_path / "demo"
    sizes = "data.benchmark_sizes={source_train: 4, source_test: 2, target_train: 4, target_test: 2, target_val: 2}"
    tiny = [*TINY_RUN, sizes, "train.batch_size=2", "model.deconv_channels=8", "train.pretrain_steps=2"]
    argv = ["demo", "--task", "benchmark_hand", "--out", str(out), "--jobs", "1", "--methods", "source_only"]
    assert main([*argv, *tiny]) == 0
    printed = capsys.readouterr().out
    assert "Fingertip" in printed  # the Hand21 table
    run = json.loads((out / "source_only" / "results.json").read_text())
    assert run["steps"] == 2 and set(run["target"]["groups"]) == {"MCP", "PIP", "DIP", "Fingertip"}
    assert json.loads((out / "benchmark" / "benchmark.json").read_text())["body"] == "hand"

    # The same folder for the human benchmark would reuse the hand runs: refused in one line.
    assert main(["demo", "--out", str(out), "--methods", "source_only", *tiny]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "hand benchmark" in error[0] and "--out" in error[0]
    assert main(["demo", "--task", "coco_small", "--out", str(tmp_path / "other"), "--methods", "source_only"]) == 2
    assert "not a built-in benchmark" in capsys.readouterr().err

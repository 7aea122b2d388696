"""Human3.6M: ``posealign data prepare human36m`` and ``load_human36m`` against the anchors' rules.

The fixture is the parsed release's layout (``annotations/Human36M_subject{s}_{data,camera,joint_3d}.json``
and ``images/``) for all seven subjects, seven listed frames each, 200 x 150 frames whose pixel
(x, y) has red x and green y. Cameras and joints are chosen so that every projection and crop box
can be worked out by hand; the expected numbers below are those hand results, not the code's.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_datasets import make_surreal, raises_one_line_error
from test_task_presets import CPU_SMOKE

from posealign.cli import main
from posealign.data.human36m import load_human36m
from posealign.data.prepare_human36m import prepare_human36m
from posealign.keypoints import BODY16

SUBJECTS = (1, 5, 6, 7, 8, 9, 11)
FRAME_WIDTH, FRAME_HEIGHT = 200, 150
LISTED = 7  # frames listed per subject; the anchors keep list entries 0 and 5
H36M_NAMES = (
    "Pelvis", "R_Hip", "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Torso", "Neck", "Nose",
    "Head", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Shoulder", "R_Elbow", "R_Wrist",
)  # fmt: skip
# World x, y (z = 0) of each joint. Torso and Nose lie far out: Body16 drops them, so they must not
# widen the crop. The other 15 span x in [-30, 30], y in [-35, 35].
POSE = {
    "Pelvis": (0, 5), "R_Hip": (-10, 5), "R_Knee": (-12, 20), "R_Ankle": (-14, 35), "L_Hip": (10, 5),
    "L_Knee": (12, 20), "L_Ankle": (14, 35), "Torso": (-90, -70), "Neck": (0, -25), "Nose": (90, 70),
    "Head": (0, -35), "L_Shoulder": (16, -20), "L_Elbow": (24, -5), "L_Wrist": (30, 8),
    "R_Shoulder": (-16, -20), "R_Elbow": (-24, -5), "R_Wrist": (-30, 8),
}  # fmt: skip
# Body16 keypoint -> the Human3.6M joint it is (the anchors' body_index; thorax is computed).
BODY16_FROM = {
    "right_ankle": "R_Ankle", "right_knee": "R_Knee", "right_hip": "R_Hip", "left_hip": "L_Hip",
    "left_knee": "L_Knee", "left_ankle": "L_Ankle", "pelvis": "Pelvis", "upper_neck": "Neck",
    "head_top": "Head", "right_wrist": "R_Wrist", "right_elbow": "R_Elbow", "right_shoulder": "R_Shoulder",
    "left_shoulder": "L_Shoulder", "left_elbow": "L_Elbow", "left_wrist": "L_Wrist",
}  # fmt: skip
# Camera 1: R = I, t = (0, 0, 1000), f = 1000, c = (100, 75): a joint at world (x, y, 0) lands on
# pixel (x + 100, y + 75). Camera 2 turns 90 degrees about z, t = (0, 0, 2000), f = 2000: pixel
# (100 - y, 75 + x).
CAMERAS = {
    "1": {"R": np.eye(3).tolist(), "t": [0, 0, 1000], "f": [1000, 1000], "c": [100, 75]},
    "2": {"R": [[0, -1, 0], [1, 0, 0], [0, 0, 1]], "t": [0, 0, 2000], "f": [2000, 2000], "c": [100, 75]},
}
# Each kept frame's pose variant: (camera, scale, world x shift), and its crop box (left, upper,
# side) worked out by hand from the anchors' scale_box(box, 200, 150, 1.5):
# plain:   pixels x in [70, 130], y in [40, 110]; side round(1.5 x 70) = 105; left round(47.5) = 48
#          and upper round(22.5) = 22 (Python rounds halves to even).
# shifted: x in [-15, 45]; left round(15 - 52.5) = -38, moved inside the frame to 0.
# large:   x in [40, 160], y in [5, 145]; side min(round(1.5 x 140), 150) = 150; left 25, upper 0.
# turned:  camera 2, x in [65, 135], y in [45, 105]; side 105, left 48, upper 22.
VARIANTS = {
    "plain": ("1", 1, 0, (48, 22, 105)),
    "shifted": ("1", 1, -85, (0, 22, 105)),
    "large": ("1", 2, 0, (25, 0, 150)),
    "turned": ("2", 1, 0, (48, 22, 105)),
}
FIRST_FRAME_VARIANT = {1: "plain", 5: "shifted", 6: "large", 7: "plain", 8: "shifted", 9: "large", 11: "plain"}


def frame_name(subject: int, i: int) -> str:
    folder = f"s_{subject:02d}_act_02_subact_01_ca_0{1 + (i == 5)}"
    return f"{folder}/{folder}_{3 * i + 1:06d}.jpg"


def variant_of(subject: int, i: int) -> str:
    return FIRST_FRAME_VARIANT[subject] if i == 0 else "turned" if i == 5 else "plain"


def world_joints(variant: str) -> np.ndarray:
    _, scale, shift, _ = VARIANTS[variant]
    return np.array([[scale * POSE[n][0] + shift, scale * POSE[n][1], 0.0] for n in H36M_NAMES])


def pixel(variant: str, name: str) -> tuple[float, float]:
    camera, scale, shift, _ = VARIANTS[variant]
    x, y = scale * POSE[name][0] + shift, scale * POSE[name][1]
    return (x + 100.0, y + 75.0) if camera == "1" else (100.0 - y, 75.0 + x)


def expected_keypoints(variant: str) -> np.ndarray:
    """Body16 keypoints in the 512-pixel crop, by hand: thorax is the shoulders' midpoint."""
    left, upper, side = VARIANTS[variant][3]
    points = []
    for name in BODY16.names:
        if name == "thorax":
            (ax, ay), (bx, by) = pixel(variant, "R_Shoulder"), pixel(variant, "L_Shoulder")
            x, y = (ax + bx) / 2, (ay + by) / 2
        else:
            x, y = pixel(variant, BODY16_FROM[name])
        points.append(((x - left) * 512 / side, (y - upper) * 512 / side))
    return np.array(points)


def write_frame(path: Path) -> None:
    x, y = np.meshgrid(np.arange(FRAME_WIDTH), np.arange(FRAME_HEIGHT))
    pixels = np.stack([x, y, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=98)


def make_human36m_release(raw: Path) -> None:
    for subject in SUBJECTS:
        images, joints = [], {}
        for i in range(LISTED):
            name = frame_name(subject, i)
            write_frame(raw / "images" / name)
            camera = VARIANTS[variant_of(subject, i)][0]
            entry = {"id": i, "file_name": name, "width": FRAME_WIDTH, "height": FRAME_HEIGHT, "subject": subject}
            entry.update({"action_idx": 2, "subaction_idx": 1, "frame_idx": 3 * i + 1, "cam_idx": int(camera)})
            images.append(entry)
            joints.setdefault("2", {}).setdefault("1", {})[str(3 * i + 1)] = world_joints(
                variant_of(subject, i)
            ).tolist()
        annotations = raw / "annotations"
        annotations.mkdir(parents=True, exist_ok=True)
        (annotations / f"Human36M_subject{subject}_data.json").write_text(json.dumps({"images": images}))
        (annotations / f"Human36M_subject{subject}_camera.json").write_text(json.dumps(CAMERAS))
        (annotations / f"Human36M_subject{subject}_joint_3d.json").write_text(json.dumps(joints))


def make_human36m(root: Path) -> None:
    """The release, prepared in place (the anchors' layout)."""
    make_human36m_release(root)
    prepare_human36m(root, root, progress=False)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("human36m")
    make_human36m(root)
    return root


def kept(subjects) -> list[tuple[int, int]]:
    """The anchors' frame rule: list entries with index % 5 == 0, subjects in the split's order."""
    return [(s, i) for s in subjects for i in range(LISTED) if i % 5 == 0]


# ---------------------------------------------------------------- preparation


def test_prepare_keeps_every_fifth_listed_frame_and_writes_the_anchors_files(prepared):
    for subject in SUBJECTS:
        samples = json.loads((prepared / "annotations" / f"keypoints2d_{subject}.json").read_text())
        assert [s["name"] for s in samples] == [frame_name(subject, 0), frame_name(subject, 5)]
        assert {"name", "keypoint2d", "keypoint3d", "intrinsic_matrix"} <= set(samples[0])
    cropped = sorted(p.relative_to(prepared / "crop_images").as_posix() for p in prepared.rglob("crop_images/**/*.jpg"))
    assert cropped == sorted(frame_name(s, i) for s, i in kept(SUBJECTS))


def test_prepare_crop_box_follows_scale_box(prepared):
    """The crop's pixel (cx, cy) shows the frame's pixel left + (cx + 0.5) side / 512 - 0.5 (red) and
    upper + ... (green): the crop is exactly the hand-worked square, resized to 512."""
    for subject, i in kept(SUBJECTS):
        left, upper, side = VARIANTS[variant_of(subject, i)][3]
        with Image.open(prepared / "crop_images" / frame_name(subject, i)) as opened:
            assert opened.size == (512, 512)
            crop = np.asarray(opened.convert("RGB"), dtype=np.float64)
        for cx, cy in [(100, 100), (256, 300), (400, 450)]:
            red, green = crop[cy, cx, 0], crop[cy, cx, 1]
            assert red == pytest.approx(left + (cx + 0.5) * side / 512 - 0.5, abs=4), (subject, i)
            assert green == pytest.approx(upper + (cy + 0.5) * side / 512 - 0.5, abs=4), (subject, i)


def test_prepare_keypoints_order_projection_and_crop(prepared):
    for subject in SUBJECTS:
        samples = json.loads((prepared / "annotations" / f"keypoints2d_{subject}.json").read_text())
        for sample, i in zip(samples, (0, 5), strict=True):
            expected = expected_keypoints(variant_of(subject, i))
            np.testing.assert_allclose(sample["keypoint2d"], expected, atol=1e-6)
            # The crop's camera reprojects the camera-space joints onto the crop's keypoints.
            projected = np.asarray(sample["keypoint3d"]) @ np.asarray(sample["intrinsic_matrix"]).T
            np.testing.assert_allclose(projected[:, :2] / projected[:, 2:], expected, atol=1e-6)


def test_prepare_skips_finished_subjects(tmp_path):
    make_human36m_release(tmp_path / "raw")
    first = prepare_human36m(tmp_path / "raw", tmp_path / "out", subjects=[9], progress=False)
    assert first.subjects == [9] and first.frames == 2
    again = prepare_human36m(tmp_path / "raw", tmp_path / "out", subjects=[9, 11], progress=False)
    assert again.skipped == [9] and again.subjects == [11]


# ---------------------------------------------------------------- loader: splits and records


def test_train_split_is_subjects_1_5_6_7_8_in_order(prepared):
    dataset = load_human36m(prepared, split="train")
    assert dataset.keypoint_set.name == "body16"
    expected = kept((1, 5, 6, 7, 8))
    assert [r.image for r in dataset.records] == [prepared / "crop_images" / frame_name(s, i) for s, i in expected]
    for record, (subject, i) in zip(dataset.records, expected, strict=True):
        keypoints = expected_keypoints(variant_of(subject, i))
        np.testing.assert_allclose(record.keypoints, keypoints, atol=1e-4)
        inside = (keypoints >= 0).all(1) & (keypoints < 512).all(1)
        np.testing.assert_array_equal(record.visible, inside)
        np.testing.assert_allclose(record.crop_box, [0, 0, 512, 512])  # the whole cached crop
    # The shifted pose sticks out of the frame's left edge: its right-side joints are outside the crop.
    shifted = dataset.records[expected.index((5, 0))]
    assert not shifted.visible[BODY16.names.index("right_wrist")] and shifted.visible.sum() < 16


def test_test_split_draws_3200_with_replacement_seed_42(prepared):
    pool = [frame_name(s, i) for s, i in kept((9, 11))]
    stream = random.Random(42)
    # random.choices(pool, k) without weights picks pool[floor(random() * len(pool))], k times.
    expected = [pool[math.floor(stream.random() * len(pool))] for _ in range(3200)]
    dataset = load_human36m(prepared, split="test")
    assert [r.image.relative_to(prepared / "crop_images").as_posix() for r in dataset.records] == expected
    once = load_human36m(prepared, split="test", test_count=None)
    assert [r.image.relative_to(prepared / "crop_images").as_posix() for r in once.records] == pool
    assert len(load_human36m(prepared, split="all")) == len(kept(SUBJECTS))


def test_inspect_reads_both_splits(prepared, capsys):
    code = main(["data", "inspect", "--dataset", "human36m", "--root", str(prepared), "--limit", "1"])
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.err.strip().splitlines()[-1])
    assert summary["records"] == {"train": 10, "test": 3200} and summary["images_missing"] == 0
    first = json.loads(captured.out.strip())
    assert first["image"] == f"crop_images/{frame_name(1, 0)}"
    np.testing.assert_allclose([p[:2] for p in first["keypoints"]], expected_keypoints("plain"), atol=0.01)


def test_prepare_command(tmp_path, capsys):
    make_human36m_release(tmp_path / "raw")
    code = main(
        ["data", "prepare", "human36m", str(tmp_path / "raw"), str(tmp_path / "out"), "--subject", "9", "--no-progress"]
    )
    assert code == 0 and "subjects [9] prepared (2 frames)" in capsys.readouterr().err
    assert (tmp_path / "out" / "annotations" / "keypoints2d_9.json").is_file()
    assert main(["data", "prepare", "human36m", str(tmp_path / "raw"), str(tmp_path / "out"), "--stride", "3"]) == 2
    assert "--stride" in capsys.readouterr().err
    assert main(["data", "prepare", "surreal", str(tmp_path / "raw"), str(tmp_path / "s"), "--subject", "9"]) == 2
    assert "--subject" in capsys.readouterr().err


# ---------------------------------------------------------------- one-line errors


def test_missing_files_and_wrong_keypoint_counts(tmp_path):
    raw = tmp_path / "raw"
    make_human36m_release(raw)
    with raises_one_line_error("keypoints2d_1.json"):
        load_human36m(raw, split="train")
    (raw / "annotations" / "Human36M_subject9_camera.json").unlink()
    with raises_one_line_error("Human36M_subject9_camera.json"):
        prepare_human36m(raw, raw, subjects=[9], progress=False)
    joints_path = raw / "annotations" / "Human36M_subject11_joint_3d.json"
    joints = json.loads(joints_path.read_text())
    joints["2"]["1"]["1"] = joints["2"]["1"]["1"][:16]
    joints_path.write_text(json.dumps(joints))
    with raises_one_line_error("Human36M_subject11_joint_3d.json"):
        prepare_human36m(raw, raw, subjects=[11], progress=False)
    (raw / "images" / frame_name(1, 5)).unlink()
    with raises_one_line_error(frame_name(1, 5)):
        prepare_human36m(raw, raw, subjects=[1], progress=False)
    broken = raw / "images" / frame_name(5, 0)
    broken.write_bytes(broken.read_bytes()[:200])
    with raises_one_line_error(frame_name(5, 0)):
        prepare_human36m(raw, raw, subjects=[5], progress=False)

    prepared = tmp_path / "prepared"
    make_human36m(prepared)
    path = prepared / "annotations" / "keypoints2d_7.json"
    samples = json.loads(path.read_text())
    samples[1]["keypoint2d"] = samples[1]["keypoint2d"][:15]
    path.write_text(json.dumps(samples))
    with raises_one_line_error("keypoints2d_7.json"):
        load_human36m(prepared, split="train")
    (prepared / "crop_images" / frame_name(9, 0)).unlink()
    with raises_one_line_error(frame_name(9, 0)):
        load_human36m(prepared, split="test")


# ---------------------------------------------------------------- the task


def test_daml_trains_on_surreal2human36m(prepared, tmp_path, capsys):
    source = tmp_path / "surreal"
    make_surreal(source)
    (source / "val").symlink_to(source / "train")
    out = tmp_path / "run"
    code = main(
        [
            "train", "--preset", "daml", "--task", "surreal2human36m", "--out", str(out),
            f"data.source_root={source}", f"data.target_root={prepared}", *CPU_SMOKE,
            "data.eval.target.options.test_count=4",
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "surreal2human36m" and results["steps"] == 4
    assert results["target"]["samples"] == 4
    assert "paper: source_only 67.3, regda 75.6" in capsys.readouterr().out

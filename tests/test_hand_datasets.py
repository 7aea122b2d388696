"""RHD, FreiHAND and H3D read from fixtures in each release's layout, against the anchors' rules.

Each fixture is built so that every keep/drop rule has a hand on each side of its threshold; the
expected hands, crops, splits and keypoint orders below are worked out by hand from UDAPE's
``rendered_hand_pose.py``, ``freihand.py``, ``hand_3d_studio.py`` and ``util.py`` (the arithmetic is
in the comments). The fixture makers are shared with tests/test_task_presets.py.
"""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from posealign.cli import main
from posealign.data.freihand import load_freihand
from posealign.data.h3d import load_h3d
from posealign.data.pose_dataset import CroppedPoseDataset
from posealign.data.registry import load_dataset
from posealign.data.rhd import RHD_TO_HAND21, load_rhd
from posealign.data.seeded_split import seeded_split
from posealign.errors import DatasetFormatError
from posealign.heatmaps import crop_to_image

# ---------------------------------------------------------------- fixtures in the released layouts

# 21 points spread over a square: x = left + e * (k % 5) / 4, y = upper + e * (k // 5) / 4, so the
# tight box of a hand is exactly [left, left + e] x [upper, upper + e].
GRID = np.array([[(k % 5) / 4, (k // 5) / 4] for k in range(21)])


def hand_points(center_x: float, center_y: float, extent: float) -> np.ndarray:
    return np.array([center_x - extent / 2, center_y - extent / 2]) + extent * GRID


def write_pattern_image(path: Path, width: int, height: int) -> None:
    """An image whose pixels differ left to right and top to bottom, so a flip or shift shows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    pixels = np.stack([x * 255 // width, y * 255 // height, (x * 7 + y * 3) % 256], -1).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def rhd_sample(left: np.ndarray, right: np.ndarray, left_visible: int = 21, right_visible: int = 21) -> dict:
    """One RHD annotation: rows 0-20 the left hand, 21-41 the right, each in RHD's order (wrist,
    then per finger tip, DIP, PIP, MCP); ``left``/``right`` are given in Hand21's order."""
    uv_vis = np.zeros((42, 3))
    for offset, points, count in ((0, left, left_visible), (21, right, right_visible)):
        rows = [offset + row for row in RHD_TO_HAND21]
        uv_vis[rows, :2] = points
        uv_vis[rows, 2] = [1] * count + [0] * (21 - count)
    return {"uv_vis": uv_vis.astype(np.float32), "xyz": np.zeros((42, 3), np.float32), "K": np.eye(3, dtype=np.float32)}


FAR_SMALL = hand_points(250, 250, 10)  # an "other hand" that is dropped for its size and overlaps nothing

# training set: per sample, which hands the anchors keep (worked out below)
RHD_TRAINING = {
    # e = 44: side round(1.5 * 44) = 66, kept as right - left = 65 > 64; box (47, 47, 65, 65).
    0: rhd_sample(hand_points(80, 80, 44), FAR_SMALL),
    # left e = 43.4: side round(65.1) = 65, right - left = 64, not > 64: dropped. Right e = 60 with
    # 17 visible: kept (17 > 16), mirrored.
    1: rhd_sample(hand_points(80, 80, 43.4), hand_points(240, 240, 60), right_visible=17),
    # left e = 60 with 16 visible: dropped (16 is not > 16). Right kept.
    2: rhd_sample(hand_points(80, 80, 60), hand_points(240, 80, 60), left_visible=16),
    # Overlap. Left e = 60 at (100, 160): tight [70, 130] x [130, 190]; scaled side 90, box
    # [55, 144] x [115, 204], area 90 * 90 = 8100. Right e = 60 with left edge at 106: tight
    # [106, 166] x [130, 190] shares columns 106..144 (39) and rows 130..190 (61): 2379 / 8100 =
    # 0.294 < 0.3, left kept. The right hand's scaled box [91, 180] x [115, 204] shares columns
    # 91..130 (40) x 61 rows = 2440 / 8100 = 0.301 with the left's tight box: dropped.
    3: rhd_sample(hand_points(100, 160, 60), hand_points(136, 160, 60)),
    # The same with the right hand one pixel further left (edge 105): 40 x 61 / 8100 = 0.301, dropped.
    4: rhd_sample(hand_points(100, 160, 60), hand_points(135, 160, 60)),
    # Left e = 60 at (20, 300): box side 90 starts at round(20 - 45) = -25 and ends at 344, both
    # outside 320 x 320: shifted to [0, 89] x [230, 319], crop (0, 230, 89, 89). Kept.
    5: rhd_sample(hand_points(20, 300, 60), FAR_SMALL),
}
RHD_TRAIN_KEPT = [(0, "left"), (1, "right"), (2, "right"), (3, "left"), (5, "left")]
RHD_EVALUATION = {7: rhd_sample(hand_points(80, 80, 60), hand_points(240, 240, 60))}


def make_rhd(root: Path) -> Path:
    """RHD_published_v2 under ``root``: 6 training renders, 1 evaluation render with both hands kept."""
    release = root / "RHD_published_v2"
    for folder, samples in (("training", RHD_TRAINING), ("evaluation", RHD_EVALUATION)):
        (release / folder).mkdir(parents=True, exist_ok=True)
        with (release / folder / f"anno_{folder}.pickle").open("wb") as file:
            pickle.dump(samples, file)
        for sample_id in samples:
            write_pattern_image(release / folder / "color" / f"{sample_id:05d}.png", 320, 320)
    return release


FREIHAND_HANDS = 3
FREIHAND_K = [[300.0, 0.0, 112.0], [0.0, 300.0, 112.0], [0.0, 0.0, 1.0]]


def freihand_xyz(hand: int) -> np.ndarray:
    """Hand ``hand`` at depth 2: u = 300 x + 112. Hand 0 spans u, v in [82, 142] (x, y in [-0.1, 0.1])."""
    points = hand_points(0.1 * hand, 0.0, 0.2)
    return np.concatenate([points, np.ones((21, 1))], 1) * 2.0


def make_freihand(root: Path) -> Path:
    """training_K.json, training_xyz.json (and training_mano.json) for 3 hands, 4 x 3 renders."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "training_K.json").write_text(json.dumps([FREIHAND_K] * FREIHAND_HANDS))
    (root / "training_xyz.json").write_text(json.dumps([freihand_xyz(h).tolist() for h in range(FREIHAND_HANDS)]))
    (root / "training_mano.json").write_text(json.dumps([[[0.0] * 61]] * FREIHAND_HANDS))
    for image_id in range(4 * FREIHAND_HANDS):
        write_pattern_image(root / "training" / "rgb" / f"{image_id:08d}.jpg", 224, 224)
    return root


H3D_NOOBJECT, H3D_OBJECT = 10, 3


def make_h3d(root: Path) -> Path:
    """H3D_crop under ``root``: 10 hands without objects (ids 0-9) then 3 with (ids 10-12), 48 px crops."""
    release = root / "H3D_crop"
    samples = []
    for index in range(H3D_NOOBJECT + H3D_OBJECT):
        name = f"part{1 + index % 2}/{index:04d}.jpg"
        write_pattern_image(release / name, 48, 48)
        samples.append(
            {
                "name": name,
                "keypoint2d": hand_points(24.3, 23.7, 20 + index).tolist(),
                "keypoint3d": np.zeros((21, 3)).tolist(),
                "intrinsic_matrix": np.eye(3).tolist(),
                "without_object": int(index < H3D_NOOBJECT),
            }
        )
    (release / "annotation.json").write_text(json.dumps(samples))
    return release


# ---------------------------------------------------------------- RHD


def test_rhd_keeps_the_hands_the_anchors_keep(tmp_path):
    make_rhd(tmp_path)
    train = load_rhd(tmp_path, "train")  # the RHD_published_v2 folder is found under the root
    assert [(r.meta["sample_id"], r.category) for r in train.records] == RHD_TRAIN_KEPT
    assert [r.mirror for r in train.records] == [hand == "right" for _, hand in RHD_TRAIN_KEPT]
    boxes = {(r.meta["sample_id"], r.category): r.crop_box.tolist() for r in train.records}
    assert boxes[(0, "left")] == [47, 47, 65, 65]
    assert boxes[(3, "left")] == [55, 115, 89, 89]
    assert boxes[(5, "left")] == [0, 230, 89, 89]
    assert boxes[(1, "right")] == [195, 195, 89, 89]  # e = 60 at (240, 240): round(240 - 45) = 195
    test = load_rhd(tmp_path / "RHD_published_v2", "test")
    assert [(r.meta["sample_id"], r.category, r.split) for r in test.records] == [
        (7, "left", "test"),
        (7, "right", "test"),
    ]
    assert len(load_rhd(tmp_path, "all")) == 7


def test_rhd_keypoint_order_and_visibility(tmp_path):
    release = make_rhd(tmp_path)
    uv_vis = pickle.loads((release / "training" / "anno_training.pickle").read_bytes())[1]["uv_vis"]
    right = next(r for r in load_rhd(tmp_path, "train").records if r.meta["sample_id"] == 1)
    # Hand21 keeps the wrist and turns each RHD finger (tip, DIP, PIP, MCP) around: Hand21's thumb MCP
    # (1) is RHD's row 4 and its tip (4) row 1; the little finger's MCP (17) is row 20. Right hand: + 21.
    for hand21, rhd_row in ((0, 0), (1, 4), (4, 1), (5, 8), (8, 5), (17, 20), (20, 17)):
        assert right.keypoints[hand21].tolist() == uv_vis[21 + rhd_row, :2].tolist()
    assert right.visible.sum() == 17 and right.visible[list(range(17))].all()


def test_rhd_val_split_is_every_fifth_kept_training_hand(tmp_path):
    make_rhd(tmp_path)
    val = load_rhd(tmp_path, "val")
    rest = load_rhd(tmp_path, "train-val")
    assert [(r.meta["sample_id"], r.category) for r in val.records] == [RHD_TRAIN_KEPT[0]]
    assert [(r.meta["sample_id"], r.category) for r in rest.records] == RHD_TRAIN_KEPT[1:]


def test_mirrored_hand_crop_matches_the_anchors_flip_and_maps_back(tmp_path):
    """The anchors cut ``side`` = right - left pixels, flip them (x -> side - 1 - x) and resize."""
    make_rhd(tmp_path)
    dataset = load_rhd(tmp_path, "train")
    index = next(i for i, r in enumerate(dataset.records) if r.meta["sample_id"] == 1)
    record = dataset.records[index]
    size = 32
    item = CroppedPoseDataset(dataset, size)[index]
    left, upper, side = 195, 195, 89
    with Image.open(record.image) as image:
        expected = image.convert("RGB").crop((left, upper, left + side, upper + side))
    expected = np.asarray(expected.transpose(Image.FLIP_LEFT_RIGHT).resize((size, size), Image.BILINEAR))
    assert np.abs(item["image"].permute(1, 2, 0).numpy().astype(int) - expected.astype(int)).max() <= 1
    anchors = np.stack([side - 1 - (record.keypoints[:, 0] - left), record.keypoints[:, 1] - upper], 1) * size / side
    assert np.allclose(item["keypoints"].numpy(), anchors, atol=1e-4)
    back = crop_to_image(item["keypoints"][None], item["crop_box"][None], size)[0]
    assert np.allclose(back.numpy(), record.keypoints, atol=1e-3)


def test_rhd_errors_name_the_file(tmp_path):
    release = make_rhd(tmp_path)
    (release / "evaluation" / "anno_evaluation.pickle").unlink()
    with pytest.raises(DatasetFormatError, match="anno_evaluation.pickle: not found"):
        load_rhd(tmp_path, "test")
    bad = {0: {"uv_vis": np.zeros((21, 3)), "xyz": np.zeros((21, 3)), "K": np.eye(3)}}
    (release / "training" / "anno_training.pickle").write_bytes(pickle.dumps(bad))
    with pytest.raises(DatasetFormatError, match=r"anno_training.pickle: sample 0 has uv_vis of shape \[21, 3\]"):
        load_rhd(tmp_path, "train")


# ---------------------------------------------------------------- FreiHAND


def test_freihand_projects_xyz_with_k_and_crops_the_anchors_box(tmp_path):
    make_freihand(tmp_path)
    dataset = load_freihand(tmp_path, "all", version="gs")
    hand0 = next(r for r in dataset.records if r.meta["hand"] == 0)
    assert hand0.image.name == "00000000.jpg"
    # xyz = 2 * (-0.1 .. 0.1, ..., 1): u = (300 * 2x + 112 * 2) / 2 = 82 .. 142; the same for v.
    assert np.allclose(hand0.keypoints.min(0), [82, 82]) and np.allclose(hand0.keypoints.max(0), [142, 142])
    # side round(1.5 * 60) = 90 around 112: left round(67) = 67, crop 89 pixels.
    assert hand0.crop_box.tolist() == [67, 67, 89, 89]
    assert hand0.mirror and hand0.visible.all()


def test_freihand_versions_and_seeded_split(tmp_path):
    make_freihand(tmp_path)
    everything = load_freihand(tmp_path, "all")
    # The anchors list gs, auto, sample, hom; image id = hand + 3 * (index in gs, hom, sample, auto).
    listed = [(h, v) for v in ("gs", "auto", "sample", "hom") for h in range(3)]
    image_id = {"gs": 0, "hom": 1, "sample": 2, "auto": 3}
    shuffled = [listed[i] for i in [7, 5, 2, 8, 9, 6, 11, 3, 4, 0, 1, 10]]  # random.seed(42) on 12 items
    assert [(r.meta["hand"], r.meta["version"]) for r in everything.records] == shuffled
    assert all(int(r.image.stem) == h + 3 * image_id[v] for r, (h, v) in zip(everything.records, shuffled, strict=True))
    test = load_freihand(tmp_path, "test")
    train = load_freihand(tmp_path, "train")
    assert [(r.meta["hand"], r.meta["version"]) for r in test.records] == shuffled[:2]  # int(0.2 * 12) = 2
    assert [(r.meta["hand"], r.meta["version"]) for r in train.records] == shuffled[2:]
    assert sorted(int(r.image.stem) for r in load_freihand(tmp_path, "all", version="hom").records) == [3, 4, 5]


def test_freihand_errors_name_the_file(tmp_path):
    make_freihand(tmp_path)
    (tmp_path / "training_xyz.json").write_text(json.dumps([np.zeros((20, 3)).tolist()] * 3))
    with pytest.raises(DatasetFormatError, match=r"training_xyz.json: entry 0 has shape \[20, 3\]"):
        load_freihand(tmp_path)
    (tmp_path / "training_K.json").unlink()
    with pytest.raises(DatasetFormatError, match="training_K.json: not found"):
        load_freihand(tmp_path)


# ---------------------------------------------------------------- H3D


def test_h3d_keeps_hands_without_objects_and_splits_by_seed_42(tmp_path):
    make_h3d(tmp_path)
    order = [7, 3, 2, 8, 5, 6, 9, 4, 0, 1]  # random.seed(42); random.shuffle on the 10 kept hands
    ids = {split: [int(Path(r.meta["name"]).stem) for r in load_h3d(tmp_path, split).records] for split in
           ("train", "test", "val", "train-val", "all")}  # fmt: skip
    assert ids["test"] == order[:2]  # min(int(0.2 * 10), 3200) = 2
    assert ids["train"] == order[2:]
    assert ids["val"] == order[2:4] and ids["train-val"] == order[4:]
    assert sorted(ids["all"]) == list(range(10))
    objects = load_h3d(tmp_path / "H3D_crop", "all", task="object")
    assert sorted(int(Path(r.meta["name"]).stem) for r in objects.records) == [10, 11, 12]
    record = load_h3d(tmp_path, "test").records[0]
    assert record.crop_box.tolist() == [0, 0, 48, 48] and not record.mirror and record.visible.all()
    assert record.keypoints.tolist() == hand_points(24.3, 23.7, 27).astype(np.float32).tolist()


def test_seeded_split_is_the_anchors_shuffle_and_caps_test_at_3200():
    samples = list(range(20000))
    anchors = list(samples)
    random.seed(42)
    random.shuffle(anchors)
    assert seeded_split(samples, "test") == anchors[:3200]  # 20 % would be 4000
    assert seeded_split(samples, "train") == anchors[3200:]


def test_h3d_errors_name_the_file(tmp_path):
    release = make_h3d(tmp_path)
    samples = json.loads((release / "annotation.json").read_text())
    samples[0]["keypoint2d"] = samples[0]["keypoint2d"][:20]
    (release / "annotation.json").write_text(json.dumps(samples))
    with pytest.raises(
        DatasetFormatError, match=r"annotation.json: hand part1/0000.jpg has keypoint2d of shape \[20, 2\]"
    ):
        load_h3d(tmp_path, "all")
    (release / "annotation.json").unlink()
    with pytest.raises(DatasetFormatError, match="annotation.json: not found"):
        load_h3d(tmp_path)


# ---------------------------------------------------------------- data inspect


@pytest.mark.parametrize(("dataset", "make", "counts"), [
    ("rhd", make_rhd, {"train": 5, "test": 2}),
    ("freihand", make_freihand, {"train": 10, "test": 2}),
    ("h3d", make_h3d, {"train": 8, "test": 2}),
])  # fmt: skip
def test_data_inspect_reads_each_hand_dataset(dataset, make, counts, tmp_path, capsys):
    make(tmp_path)
    assert main(["data", "inspect", "--dataset", dataset, "--root", str(tmp_path), "--limit", "1"]) == 0
    captured = capsys.readouterr()
    line = json.loads(captured.out.splitlines()[0])
    assert len(line["keypoints"]) == 21
    summary = json.loads(captured.err.strip().splitlines()[-1])
    assert summary["keypoint_set"] == "hand21" and summary["records"] == counts
    assert summary["images_missing"] == 0 and summary["images_unreadable"] == 0
    assert load_dataset(dataset, str(tmp_path), split="train").keypoint_set.num_keypoints == 21


def test_rhd_missing_images_are_one_line_naming_the_first(tmp_path):
    release = make_rhd(tmp_path)
    (release / "evaluation" / "color" / "00007.png").unlink()
    with pytest.raises(DatasetFormatError) as raised:
        load_rhd(tmp_path, "test")
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{release / 'evaluation' / 'color' / '00007.png'}: image")
    assert "(1 listed image(s) missing)" in message  # one image, though both of its hands are kept
    assert len(load_rhd(tmp_path, "test", check_images=False)) == 2


@pytest.mark.parametrize("dataset", ["rhd", "freihand", "h3d"])
def test_prepare_of_a_hand_release_points_to_inspect(tmp_path, capsys, dataset):
    assert main(["data", "prepare", dataset, str(tmp_path / "raw"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs no preparation" in err[0]
    assert f"data inspect --dataset {dataset} --root {tmp_path / 'raw'}" in err[0]
    assert not (tmp_path / "out").exists()


def test_h3d_crop_of_a_sideways_stored_image_is_the_viewers_frame(tmp_path):
    from posealign.data.records import square_box_around

    release = make_h3d(tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 wide, 56 high; a viewer turns it to 56 x 40
    Image.new("RGB", (40, 56), (90, 60, 30)).save(release / "part1/0000.jpg", exif=exif)
    record = next(r for r in load_h3d(tmp_path, "all").records if r.meta["name"] == "part1/0000.jpg")
    assert record.crop_box.tolist() == square_box_around(0, 0, 56, 40).tolist()
    assert record.crop_box.tolist() != square_box_around(0, 0, 40, 56).tolist()

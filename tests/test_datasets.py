"""Each public dataset layout, written small by the test, read back through its loader.

The fixtures follow the released layouts (METHOD.md, "Datasets as the public releases lay them out"):
``joints.mat`` saved as MATLAB lays it out, TigDog's cell arrays of structs, CC-SSL's cleaned lists.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from posealign.data.animalpose import ANIMALPOSE_TO_ANIMAL14, load_animalpose
from posealign.data.lsp import LSP_TO_BODY16, load_lsp
from posealign.data.registry import DATASET_LOADERS
from posealign.data.surreal import SMPL_TO_BODY16, load_surreal
from posealign.data.synanimal import ANIMAL18_TO_ANIMAL14, VERTEX_INDICES_18, load_synanimal
from posealign.data.tigdog import TIGER_TO_ANIMAL18, load_tigdog
from posealign.errors import DatasetFormatError


def write_image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path)


@contextlib.contextmanager
def raises_one_line_error(file_name: str) -> Iterator[None]:
    """The block must raise a DatasetFormatError whose message is one line naming ``file_name``."""
    with pytest.raises(DatasetFormatError) as excinfo:
        yield
    message = str(excinfo.value)
    assert "\n" not in message
    assert file_name in message


# ---------------------------------------------------------------- LSP

LSP_SIZES = [(40, 30), (30, 40), (50, 50), (20, 10)]


def make_lsp(root: Path, layout: str = "lsp") -> np.ndarray:
    """Write LSP with 4 images; returns the (N, 14, 3) joints [x, y, flag]."""
    rng = np.random.default_rng(0)
    joints = np.zeros((len(LSP_SIZES), 14, 3))
    for i, (width, height) in enumerate(LSP_SIZES):
        joints[i, :, 0] = rng.uniform(0, width, 14)
        joints[i, :, 1] = rng.uniform(0, height, 14)
        joints[i, :, 2] = rng.integers(0, 2, 14)
        write_image(root / "images" / f"im{i + 1:04d}.jpg", width, height)
    if layout == "lsp":  # 3 x 14 x N double, as MATLAB saves LSP's joints
        array = joints.transpose(2, 1, 0)
    elif layout == "lspet":  # 14 x 3 x N, as LSP-extended is released
        array = joints.transpose(1, 2, 0)
    else:  # N x 14 x 3
        array = joints
    scipy.io.savemat(root / "joints.mat", {"joints": np.ascontiguousarray(array, dtype=np.float64)})
    return joints


def test_lsp_mapping_visibility_and_crop(tmp_path):
    joints = make_lsp(tmp_path)
    assert scipy.io.loadmat(tmp_path / "joints.mat")["joints"].shape == (3, 14, 4)
    dataset = load_lsp(tmp_path)
    assert dataset.keypoint_set.name == "body16" and len(dataset) == 4
    for i, record in enumerate(dataset.records):
        assert record.image == tmp_path / "images" / f"im{i + 1:04d}.jpg"
        np.testing.assert_allclose(record.keypoints, joints[i, list(LSP_TO_BODY16), :2], rtol=1e-6)
        expected_visible = joints[i, list(LSP_TO_BODY16), 2] == 0  # the flag marks occluded joints
        expected_visible[[6, 7]] = False  # pelvis, thorax: not in LSP
        np.testing.assert_array_equal(record.visible, expected_visible)
        # head top feeds upper-neck's neighbour: body16 9 = LSP 13, upper neck = LSP 12
        np.testing.assert_allclose(record.keypoints[9], joints[i, 13, :2], rtol=1e-6)
        np.testing.assert_allclose(record.keypoints[8], joints[i, 12, :2], rtol=1e-6)
    # whole image, aspect kept, zero padded: a square around the image
    np.testing.assert_allclose(dataset.records[0].crop_box, [0, -5, 40, 40])
    np.testing.assert_allclose(dataset.records[1].crop_box, [-5, 0, 40, 40])


def test_lsp_splits(tmp_path):
    make_lsp(tmp_path)
    for split in ("train", "test", "all"):
        assert len(load_lsp(tmp_path, split=split)) == 4  # the UDA protocol: every split is all images
    train = load_lsp(tmp_path, split="train", protocol="standard", train_count=3)
    test = load_lsp(tmp_path, split="test", protocol="standard", train_count=3)
    assert [r.meta["index"] for r in train.records] == [0, 1, 2]
    assert [r.meta["index"] for r in test.records] == [3]


@pytest.mark.parametrize("layout", ["lspet", "transposed"])
def test_lsp_extended_layouts_read_the_flag_as_visible(tmp_path, layout):
    joints = make_lsp(tmp_path, layout=layout)
    record = load_lsp(tmp_path).records[2]
    expected_visible = joints[2, list(LSP_TO_BODY16), 2] == 1
    expected_visible[[6, 7]] = False
    np.testing.assert_array_equal(record.visible, expected_visible)
    np.testing.assert_allclose(record.keypoints, joints[2, list(LSP_TO_BODY16), :2], rtol=1e-6)


def test_lsp_malformed(tmp_path):
    with raises_one_line_error("joints.mat"):
        load_lsp(tmp_path)
    make_lsp(tmp_path)
    (tmp_path / "joints.mat").write_bytes(b"not a MATLAB file")
    with raises_one_line_error("joints.mat"):
        load_lsp(tmp_path)
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": np.zeros((2, 14, 4))})
    with raises_one_line_error("joints.mat"):
        load_lsp(tmp_path)
    make_lsp(tmp_path)
    (tmp_path / "images" / "im0003.jpg").unlink()
    with raises_one_line_error("im0003.jpg"):
        load_lsp(tmp_path)
    assert len(load_lsp(tmp_path, check_images=False)) == 4


# ---------------------------------------------------------------- SURREAL


def make_surreal(root: Path) -> dict[str, list[dict]]:
    rng = np.random.default_rng(1)
    runs = {"run0": 2, "run1": 1}
    written = {}
    for run, count in runs.items():
        samples = []
        for i in range(count):
            name = f"clip{i}_f0000.png"
            write_image(root / "train" / run / name, 48, 64)
            keypoint2d = np.stack([rng.uniform(-10, 58, 24), rng.uniform(-10, 74, 24)], axis=1)
            samples.append(
                {
                    "name": name,
                    "keypoint2d": keypoint2d.tolist(),
                    "keypoint3d": rng.normal(size=(24, 3)).tolist(),
                    "intrinsic_matrix": np.eye(3).tolist(),
                }
            )
        (root / "train" / f"{run}.json").write_text(json.dumps(samples))
        written[run] = samples
    return written


def test_surreal_smpl_mapping_visibility_and_crop(tmp_path):
    written = make_surreal(tmp_path)
    dataset = load_surreal(tmp_path, split="train")
    assert len(dataset) == 3 and dataset.keypoint_set.name == "body16"
    first = dataset.records[0]
    source = np.asarray(written["run0"][0]["keypoint2d"])
    np.testing.assert_allclose(first.keypoints, source[list(SMPL_TO_BODY16)], rtol=1e-6)
    np.testing.assert_allclose(first.keypoints[6], source[0], rtol=1e-6)  # pelvis = SMPL 0
    np.testing.assert_allclose(first.keypoints[9], source[15], rtol=1e-6)  # head top = SMPL head (15)
    inside = (first.keypoints[:, 0] >= 0) & (first.keypoints[:, 0] < 48)
    inside &= (first.keypoints[:, 1] >= 0) & (first.keypoints[:, 1] < 64)
    np.testing.assert_array_equal(first.visible, inside)
    assert not inside.all() and inside.any()
    np.testing.assert_allclose(first.crop_box, [-8, 0, 64, 64])  # the whole 48 x 64 crop, squared
    assert first.image == tmp_path / "train" / "run0" / "clip0_f0000.png"
    assert dataset.records[2].meta["run"] == "run1"
    assert len(load_surreal(tmp_path, split="train", runs=[1])) == 1


def test_surreal_malformed(tmp_path):
    with raises_one_line_error("val"):
        load_surreal(tmp_path, split="val")
    written = make_surreal(tmp_path)
    written["run1"][0]["keypoint2d"] = written["run1"][0]["keypoint2d"][:23]
    (tmp_path / "train" / "run1.json").write_text(json.dumps(written["run1"]))
    with raises_one_line_error("run1.json"):
        load_surreal(tmp_path)
    make_surreal(tmp_path)
    (tmp_path / "train" / "run0" / "clip1_f0000.png").unlink()
    with raises_one_line_error("clip1_f0000.png"):
        load_surreal(tmp_path)
    with raises_one_line_error("run2.json"):
        load_surreal(tmp_path, runs=[0, 2])


# ---------------------------------------------------------------- SynAnimal


def make_synanimal_list(root: Path) -> dict:
    rng = np.random.default_rng(2)
    keypoints = np.stack([rng.uniform(0, 64, (3, 18)), rng.uniform(0, 48, (3, 18)), rng.integers(0, 2, (3, 18))], -1)
    keypoints[0, 4, 0] = 70.0  # outside the 64 x 48 render
    paths, boxes = [], []
    for i in range(3):
        write_image(root / "synthetic_animal" / "horse_combineds5r5_texture" / f"{i:05d}img.png", 64, 48)
        paths.append(f"./animal_data/synthetic_animal/horse_combineds5r5_texture/{i:05d}img.png")
        boxes.append([5.0 + i, 60.0, 4.0, 50.0])  # x_min, x_max, y_min, y_max (y_max beyond the image)
    data = {
        "horse": {
            "keypoints": keypoints.tolist(),
            "imgpath": paths,
            "bbox": boxes,
            "train_idxs": [0, 1],
            "valid_idxs": [2],
        }
    }
    (root / "clean_data").mkdir(parents=True, exist_ok=True)
    (root / "clean_data" / "keypoints_18.json").write_text(json.dumps(data))
    return data


def test_synanimal_cleaned_list(tmp_path):
    data = make_synanimal_list(tmp_path)
    keypoints = np.asarray(data["horse"]["keypoints"])
    train = load_synanimal(tmp_path, split="train")
    test = load_synanimal(tmp_path, split="test", animal="horse")
    assert train.keypoint_set.name == "animal18" and len(train) == 2 and len(test) == 1
    record = train.records[0]
    assert record.image == tmp_path / "synthetic_animal" / "horse_combineds5r5_texture" / "00000img.png"
    assert record.category == "horse" and record.split == "train"
    np.testing.assert_allclose(record.keypoints, keypoints[0, :, :2], rtol=1e-6)
    expected = np.ones(18, dtype=bool)
    expected[4] = False  # outside the image; occluded keypoints count (released code)
    np.testing.assert_array_equal(record.visible, expected)
    np.testing.assert_allclose(record.bbox, [5, 4, 55, 44])  # x_min, x_max, y_min, y_max clipped to 64 x 48
    np.testing.assert_allclose(record.crop_box, [32.5 - 34.375, 26 - 34.375, 68.75, 68.75])
    strict = load_synanimal(tmp_path, split="train", use_occluded=False).records[0]
    np.testing.assert_array_equal(strict.visible, expected & (keypoints[0, :, 2] > 0))
    reduced = load_synanimal(tmp_path, split="all", num_keypoints=14)
    assert reduced.keypoint_set.name == "animal14" and len(reduced) == 3
    np.testing.assert_allclose(reduced.records[0].keypoints, keypoints[0, list(ANIMAL18_TO_ANIMAL14), :2], rtol=1e-6)


def make_synanimal_renders(root: Path, animal: str, count: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    folder = root / f"{animal}_combineds5r5_texture"
    all_vertices = []
    for i in range(count):
        write_image(folder / f"{i:05d}img.png", 64, 48)
        vertices = np.stack([rng.uniform(2, 62, 2600), rng.uniform(2, 46, 2600), rng.integers(0, 2, 2600)], 1)
        np.save(folder / f"{i:05d}kpts.npy", vertices)
        all_vertices.append(vertices)
    return all_vertices


def test_synanimal_raw_renders(tmp_path):
    vertices = make_synanimal_renders(tmp_path, "hound")
    everything = load_synanimal(tmp_path, split="all", animal="hound")
    np.testing.assert_allclose(
        everything.records[1].keypoints, vertices[1][list(VERTEX_INDICES_18["hound"]), :2], rtol=1e-6
    )
    box_min, box_max = vertices[1][:, :2].min(0), vertices[1][:, :2].max(0)
    np.testing.assert_allclose(everything.records[1].bbox, [*box_min, *(box_max - box_min)], rtol=1e-5)
    fourteen = load_synanimal(tmp_path, split="all", num_keypoints=14).records[1]
    indices14 = [VERTEX_INDICES_18["hound"][i] for i in ANIMAL18_TO_ANIMAL14]
    np.testing.assert_allclose(fourteen.keypoints, vertices[1][indices14, :2], rtol=1e-6)
    train = {r.image.name for r in load_synanimal(tmp_path, split="train").records}
    test = {r.image.name for r in load_synanimal(tmp_path, split="test").records}
    assert train and test and not train & test and len(train | test) == 5
    assert test == {r.image.name for r in load_synanimal(tmp_path, split="test").records}  # deterministic


def test_synanimal_malformed(tmp_path):
    make_synanimal_renders(tmp_path, "elephant", count=1)
    with raises_one_line_error("00000kpts.npy"):
        load_synanimal(tmp_path, split="all")
    assert len(load_synanimal(tmp_path, split="all", vertex_indices=list(range(18)))) == 1
    (tmp_path / "elephant_combineds5r5_texture" / "00000kpts.npy").unlink()
    with raises_one_line_error("00000kpts.npy"):
        load_synanimal(tmp_path, split="all")
    data = make_synanimal_list(tmp_path)
    data["horse"]["keypoints"][1] = data["horse"]["keypoints"][1][:17]
    (tmp_path / "clean_data" / "keypoints_18.json").write_text(json.dumps(data))
    with raises_one_line_error("keypoints_18.json"):
        load_synanimal(tmp_path)
    make_synanimal_list(tmp_path)
    (tmp_path / "synthetic_animal" / "horse_combineds5r5_texture" / "00001img.png").unlink()
    with raises_one_line_error("00001img.png"):
        load_synanimal(tmp_path)


# ---------------------------------------------------------------- TigDog

TIGDOG_SHOTS = {"tiger": [(7, 1, 2), (8, 3, 4), (9, 5, 6), (10, 7, 8)], "horse": [(1, 1, 2), (2, 3, 4)]}


def landmark_cells(frames: list[np.ndarray]) -> np.ndarray:
    """A MATLAB cell array (frames x 1) of 1 x 1 structs (coordinates K x 2, visibility K x 1)."""
    cells = np.empty((len(frames), 1), dtype=object)
    for t, frame in enumerate(frames):
        cells[t, 0] = {"coords": frame[:, :2], "visibility": frame[:, 2:3]}
    return cells


def make_tigdog(root: Path, skip_landmarks: tuple[int, ...] = ()) -> dict[tuple[str, int], np.ndarray]:
    """behaviorDiscovery2.0 with 19 landmarks per frame; returns (animal, frame) -> (19, 3) landmarks."""
    rng = np.random.default_rng(4)
    base = root / "behaviorDiscovery2.0"
    truth = {}
    for animal, shots in TIGDOG_SHOTS.items():
        (base / "ranges" / animal).mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(base / "ranges" / animal / "ranges.mat", {"ranges": np.array(shots, dtype=np.float64)})
        (base / "landmarks" / animal).mkdir(parents=True, exist_ok=True)
        for shot, start, end in shots:
            frames = []
            for frame in range(start, end + 1):
                landmarks = np.stack([rng.uniform(20, 180, 19), rng.uniform(20, 100, 19), rng.integers(0, 2, 19)], 1)
                landmarks[0] = [0, 0, 0]  # unlabeled
                landmarks[1, 2] = 1
                truth[(animal, frame)] = landmarks
                frames.append(landmarks)
                write_image(base / animal / f"{frame:08d}.jpg", 200, 120)
            if shot not in skip_landmarks:
                scipy.io.savemat(base / "landmarks" / animal / f"{shot}.mat", {"landmarks": landmark_cells(frames)})
    return truth


def test_tigdog_fixture_matches_the_released_indexing(tmp_path):
    truth = make_tigdog(tmp_path)
    mat = scipy.io.loadmat(tmp_path / "behaviorDiscovery2.0" / "landmarks" / "tiger" / "8.mat")
    coords = mat["landmarks"][1][0][0][0][0]  # how the released code reads frame 1 of a shot
    vis = mat["landmarks"][1][0][0][0][1]
    np.testing.assert_allclose(np.hstack((coords, vis)), truth[("tiger", 4)])


def test_tigdog_permutation_visibility_and_crop(tmp_path):
    truth = make_tigdog(tmp_path)
    tiger = load_tigdog(tmp_path, split="all", animal="tiger")  # root above behaviorDiscovery2.0 works too
    assert tiger.keypoint_set.name == "animal18" and len(tiger) == 8
    for record in tiger.records:
        expected = truth[("tiger", record.meta["frame"])][:18][list(TIGER_TO_ANIMAL18)]
        np.testing.assert_allclose(record.keypoints, expected[:, :2], rtol=1e-6)
        np.testing.assert_array_equal(record.visible, (expected[:, 2] > 0) & (expected[:, 0] > 0))
        assert record.category == "tiger"
        assert record.image.name == f"{record.meta['frame']:08d}.jpg"
    # the permutation: Animal18 slot 8 holds the tiger's 15th landmark, slot 14 its 9th
    record = tiger.records[0]
    raw = truth[("tiger", record.meta["frame"])]
    np.testing.assert_allclose(record.keypoints[8], raw[14, :2], rtol=1e-6)
    np.testing.assert_allclose(record.keypoints[14], raw[8, :2], rtol=1e-6)
    horse = load_tigdog(tmp_path, split="all", animal="horse").records[0]
    np.testing.assert_allclose(horse.keypoints, truth[("horse", 1)][:18, :2], rtol=1e-6)
    # crop: visible keypoints +- 15 px, clipped to the 200 x 120 frame, square of 1.25 x the longer side
    points = record.keypoints[record.visible]
    x0, y0 = np.maximum(points.min(0) - 15, 0)
    x1, y1 = np.minimum(points.max(0) + 15, [200, 120])
    np.testing.assert_allclose(record.bbox, [x0, y0, x1 - x0, y1 - y0], rtol=1e-5)
    side = max(x1 - x0, y1 - y0) * 1.25
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    np.testing.assert_allclose(record.crop_box, [*(centre - side / 2), side, side], rtol=1e-5)


def test_tigdog_splits_by_shot(tmp_path):
    make_tigdog(tmp_path, skip_landmarks=(10,))
    train = load_tigdog(tmp_path, split="train", animal="tiger", test_fraction=0.34)
    test = load_tigdog(tmp_path, split="test", animal="tiger", test_fraction=0.34)
    train_shots = {r.meta["shot"] for r in train.records}
    test_shots = {r.meta["shot"] for r in test.records}
    assert len(test_shots) == 1 and not train_shots & test_shots
    assert train_shots | test_shots == {7, 8, 9}  # shot 10 has no landmark file: skipped
    assert all(r.split == "test" for r in test.records)
    again = load_tigdog(tmp_path, split="test", animal="tiger", test_fraction=0.34)
    assert {r.meta["shot"] for r in again.records} == test_shots
    both = load_tigdog(tmp_path, split="all")
    assert {r.category for r in both.records} == {"horse", "tiger"} and len(both) == 10


def test_tigdog_malformed(tmp_path):
    make_tigdog(tmp_path)
    base = tmp_path / "behaviorDiscovery2.0"
    scipy.io.savemat(base / "landmarks" / "tiger" / "9.mat", {"landmarks": landmark_cells([np.ones((12, 3))] * 2)})
    with raises_one_line_error("9.mat"):
        load_tigdog(base, split="all", animal="tiger")
    scipy.io.savemat(base / "ranges" / "horse" / "ranges.mat", {"ranges": np.ones((2, 2))})
    with raises_one_line_error("ranges.mat"):
        load_tigdog(base, split="all", animal="horse")
    make_tigdog(tmp_path)
    (base / "tiger" / "00000005.jpg").unlink()
    with raises_one_line_error("00000005.jpg"):
        load_tigdog(base, split="all", animal="tiger")


# ---------------------------------------------------------------- Animal-Pose


def make_animalpose(root: Path, with_categories: bool = True, count: int = 10) -> dict:
    """Animal-Pose's keypoints.json + images/: ``count`` images cycling through the five categories."""
    rng = np.random.default_rng(5)
    names = ["dog", "cat", "sheep", "horse", "cow"]
    images = {str(i): f"2007_{i:06d}.jpg" for i in range(1, count + 1)}
    annotations = []
    for i in range(1, count + 1):
        write_image(root / "images" / images[str(i)], 32, 24)
        keypoints = np.stack([rng.uniform(0, 32, 20), rng.uniform(0, 24, 20), rng.integers(0, 2, 20)], 1)
        annotations.append(
            {
                "image_id": i,
                "bbox": [2.0, 3.0, 22.0, 13.0],
                "keypoints": keypoints.tolist(),
                "num_keypoints": int(keypoints[:, 2].sum()),
                "category_id": (i - 1) % 5 + 1,
            }
        )
    data = {"images": images, "annotations": annotations}
    if with_categories:
        data["categories"] = [{"id": k + 1, "name": name} for k, name in enumerate(names)]
    (root / "keypoints.json").write_text(json.dumps(data))
    return data


def test_animalpose_mapping_boxes_and_categories(tmp_path):
    data = make_animalpose(tmp_path)
    everything = load_animalpose(tmp_path, split="all")
    assert everything.keypoint_set.name == "animal14" and len(everything) == 10
    record = everything.records[0]
    source = np.asarray(data["annotations"][0]["keypoints"])
    np.testing.assert_allclose(record.keypoints, source[list(ANIMALPOSE_TO_ANIMAL14), :2], rtol=1e-6)
    np.testing.assert_array_equal(record.visible, source[list(ANIMALPOSE_TO_ANIMAL14), 2] > 0)
    np.testing.assert_allclose(record.keypoints[2], source[13, :2], rtol=1e-6)  # first hoof = keypoint 13
    np.testing.assert_allclose(record.bbox, [2, 3, 20, 10])  # [x1, y1, x2, y2] -> x, y, w, h
    np.testing.assert_allclose(record.crop_box, [12 - 12.5, 8 - 12.5, 25, 25])
    assert record.image == tmp_path / "images" / "2007_000001.jpg"
    dogs = load_animalpose(tmp_path, split="all", category="dog")
    assert {r.category for r in dogs.records} == {"dog"} and len(dogs) == 2
    (tmp_path / "keypoints.json").write_text(json.dumps({k: v for k, v in data.items() if k != "categories"}))
    assert {r.category for r in load_animalpose(tmp_path, split="all", category="cow").records} == {"cow"}


def test_animalpose_split_is_by_image_and_deterministic(tmp_path):
    make_animalpose(tmp_path)
    train = {r.meta["image_id"] for r in load_animalpose(tmp_path, split="train").records}
    test = {r.meta["image_id"] for r in load_animalpose(tmp_path, split="test").records}
    assert len(test) == 2 and not train & test and len(train | test) == 10
    assert test == {r.meta["image_id"] for r in load_animalpose(tmp_path, split="test").records}


def test_animalpose_malformed(tmp_path):
    data = make_animalpose(tmp_path)
    data["annotations"][3]["keypoints"] = data["annotations"][3]["keypoints"][:19]
    (tmp_path / "keypoints.json").write_text(json.dumps(data))
    with raises_one_line_error("keypoints.json"):
        load_animalpose(tmp_path, split="all")
    data = make_animalpose(tmp_path)
    data["annotations"][0]["image_id"] = 99
    (tmp_path / "keypoints.json").write_text(json.dumps(data))
    with raises_one_line_error("keypoints.json"):
        load_animalpose(tmp_path, split="all")
    make_animalpose(tmp_path)
    with raises_one_line_error("keypoints.json"):
        load_animalpose(tmp_path, category="zebra")
    (tmp_path / "images" / "2007_000004.jpg").unlink()
    with raises_one_line_error("2007_000004.jpg"):
        load_animalpose(tmp_path, split="all")


def test_every_loader_is_registered():
    assert {"surreal", "lsp", "synanimal", "tigdog", "animalpose", "coco"} <= set(DATASET_LOADERS)

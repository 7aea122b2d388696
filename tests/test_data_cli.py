"""``posealign data inspect`` and ``posealign data prepare surreal`` through ``posealign.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import scipy.io
from PIL import Image
from test_datasets import make_animalpose, make_lsp, make_surreal, make_tigdog

from posealign.cli import main
from posealign.data.prepare_surreal import surreal_world_to_camera
from posealign.data.surreal import SMPL_TO_BODY16, load_surreal


def run_cli(capsys, *argv: str) -> tuple[int, list[str], list[str]]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


# ---------------------------------------------------------------- inspect


def test_inspect_lsp_lines_and_summary(tmp_path, capsys):
    joints = make_lsp(tmp_path)
    code, out, err = run_cli(capsys, "data", "inspect", "--dataset", "lsp", "--root", str(tmp_path))
    assert code == 0 and len(out) == 4
    first = json.loads(out[0])
    assert set(first) == {"image", "keypoints", "bbox"}
    assert first["image"] == "images/im0001.jpg"
    assert len(first["keypoints"]) == 16 and len(first["bbox"]) == 4
    assert first["keypoints"][6][2] == 0 and first["keypoints"][7][2] == 0  # pelvis, thorax
    assert first["keypoints"][0] == [round(joints[0, 0, 0], 2), round(joints[0, 0, 1], 2), int(joints[0, 0, 2] == 0)]
    summary = json.loads(err[-1])
    assert summary["records"] == {"all": 4}
    assert {"pelvis", "thorax"} <= set(summary["never_visible"])
    assert summary["images_missing"] == 0 and summary["keypoint_set"] == "body16"


def test_inspect_counts_missing_images_and_limits(tmp_path, capsys):
    make_lsp(tmp_path)
    (tmp_path / "images" / "im0002.jpg").unlink()
    code, out, err = run_cli(capsys, "data", "inspect", "--dataset", "lsp", "--root", str(tmp_path), "--limit", "2")
    assert code == 0 and len(out) == 2
    summary = json.loads(err[-1])
    assert summary["records"] == {"all": 4}
    assert summary["images_missing"] == 1 and summary["first_missing"] == "images/im0002.jpg"


def test_inspect_loader_options_and_categories(tmp_path, capsys):
    make_lsp(tmp_path / "lsp")
    code, out, _ = run_cli(
        capsys, "data", "inspect", "--dataset", "lsp", "--root", str(tmp_path / "lsp"), "--split", "train",
        "-o", "protocol=standard", "-o", "train_count=3",
    )  # fmt: skip
    assert code == 0 and len(out) == 3
    make_animalpose(tmp_path / "ap")
    root = str(tmp_path / "ap")
    code, out, err = run_cli(capsys, "data", "inspect", "--dataset", "animalpose", "--root", root, "--category", "dog")
    summary = json.loads(err[-1])
    assert code == 0 and set(summary["categories"]) == {"dog"}
    assert sum(summary["records"].values()) == 2 == len(out)
    assert len(json.loads(out[0])["keypoints"]) == 14


def test_inspect_reads_every_split_by_default(tmp_path, capsys):
    make_tigdog(tmp_path / "tigdog")
    code, out, err = run_cli(capsys, "data", "inspect", "--dataset", "tigdog", "--root", str(tmp_path / "tigdog"))
    summary = json.loads(err[-1])
    assert code == 0 and set(summary["records"]) == {"train", "test"}
    assert sum(summary["records"].values()) == len(out) == 12
    assert json.loads(out[0])["image"].startswith("horse/")
    make_surreal(tmp_path / "surreal")  # train only: val and test are reported unavailable
    code, out, err = run_cli(capsys, "data", "inspect", "--dataset", "surreal", "--root", str(tmp_path / "surreal"))
    summary = json.loads(err[-1])
    assert code == 0 and summary["records"] == {"train": 3} and set(summary["unavailable"]) == {"val", "test"}


def test_inspect_errors_are_one_line(tmp_path, capsys):
    code, out, err = run_cli(capsys, "data", "inspect", "--dataset", "lsp", "--root", str(tmp_path))
    assert code == 2 and out == [] and len(err) == 1 and "joints.mat" in err[0]
    make_lsp(tmp_path)
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "lsp", "--root", str(tmp_path), "--category", "dog")
    assert code == 2 and len(err) == 1 and "--category" in err[0]
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "lsp", "--root", str(tmp_path), "-o", "bogus=1")
    assert code == 2 and len(err) == 1 and "bogus" in err[0]
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "surreal", "--root", str(tmp_path), "--split", "val")
    assert code == 2 and len(err) == 1 and "run*.json" in err[0]


# ---------------------------------------------------------------- prepare surreal

WIDTH, HEIGHT, FRAMES = 64, 48, 6


def make_raw_surreal(raw: Path, clip: str = "01_01_c0001") -> np.ndarray:
    """One 64 x 48 clip whose joints are projected by SURREAL's camera; a bright square marks SMPL joint 0."""
    rng = np.random.default_rng(7)
    camera_location = np.array([6.0, -1.0, 0.0])
    rotation, translation = surreal_world_to_camera(camera_location)
    focal = 60.0 * WIDTH / 32.0
    joints3d = np.zeros((3, 24, FRAMES))
    joints2d = np.zeros((2, 24, FRAMES))
    video = np.full((FRAMES, HEIGHT, WIDTH, 3), 20, dtype=np.uint8)
    for t in range(FRAMES):
        world = np.stack([rng.uniform(-0.3, 0.3, 24), rng.uniform(-1.6, -0.4, 24), rng.uniform(-0.9, 0.9, 24)])
        camera = rotation @ world + translation[:, None]
        joints3d[:, :, t] = world
        joints2d[0, :, t] = focal * camera[0] / camera[2] + WIDTH / 2
        joints2d[1, :, t] = focal * camera[1] / camera[2] + HEIGHT / 2
        x, y = np.round(joints2d[:, 0, t]).astype(int)
        video[t, y - 4 : y + 4, x - 4 : x + 4] = 255
    folder = raw / "train" / "run0" / clip.rsplit("_", 1)[0]
    folder.mkdir(parents=True, exist_ok=True)
    iio.imwrite(folder / f"{clip}.mp4", video, plugin="FFMPEG", fps=10)
    info = {"joints2D": joints2d, "joints3D": joints3d, "camLoc": camera_location[:, None]}
    scipy.io.savemat(folder / f"{clip}_info.mat", info)
    return joints2d


def test_prepare_surreal_converts_and_resumes(tmp_path, capsys):
    raw, out = tmp_path / "cmu", tmp_path / "surreal"
    joints2d = make_raw_surreal(raw)
    argv = ("data", "prepare", "surreal", str(raw), str(out), "--stride", "2", "--no-progress")
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err

    dataset = load_surreal(out, split="train")
    assert len(dataset) == 3  # frames 0, 2, 4
    samples = json.loads((out / "train" / "run0.json").read_text())
    for t, sample, record in zip((0, 2, 4), samples, dataset.records, strict=True):
        assert sample["name"] == f"01_01_c0001_f{t:04d}.jpg"
        keypoint2d = np.asarray(sample["keypoint2d"])
        # the crop's intrinsics project the camera-space joints onto the crop's keypoints
        projected = (np.asarray(sample["intrinsic_matrix"]) @ np.asarray(sample["keypoint3d"]).T).T
        np.testing.assert_allclose(projected[:, :2] / projected[:, 2:], keypoint2d, atol=0.02)
        # crop = square of 1.5 x the joints' box; the joints are a pure shift of the frame's
        box = joints2d[:, :, t].max(1) - joints2d[:, :, t].min(1)
        assert record.meta["name"] == sample["name"]
        assert abs(sample["width"] - 1.5 * box.max()) <= 1 and sample["width"] == sample["height"]
        shift = joints2d[:, :, t].T - keypoint2d
        np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=2e-3)
        # the marked joint (SMPL 0 = Body16 pelvis) is bright in the written crop
        pelvis = record.keypoints[list(SMPL_TO_BODY16).index(0)]
        crop = np.asarray(Image.open(record.image).convert("L"))
        assert crop[int(round(pelvis[1])), int(round(pelvis[0]))] > 150
        assert record.visible.all()

    run_file = out / "train" / "run0.json"
    stamp = run_file.stat().st_mtime_ns
    image_stamp = dataset.records[0].image.stat().st_mtime_ns
    code, _, err = run_cli(capsys, *argv)  # a second run is a no-op
    assert code == 0 and "0 converted" in err[-1] and "1 already done" in err[-1]
    assert run_file.stat().st_mtime_ns == stamp and dataset.records[0].image.stat().st_mtime_ns == image_stamp
    run_file.unlink()  # a lost run file is gathered again from the finished clips
    code, _, err = run_cli(capsys, *argv)
    assert code == 0 and "0 converted" in err[-1]
    assert json.loads(run_file.read_text()) == samples


def test_prepare_surreal_reports_a_clip_without_info(tmp_path, capsys):
    raw, out = tmp_path / "cmu", tmp_path / "surreal"
    make_raw_surreal(raw)
    broken = raw / "train" / "run0" / "01_01" / "01_01_c0002.mp4"
    broken.write_bytes((raw / "train" / "run0" / "01_01" / "01_01_c0001.mp4").read_bytes())
    code, _, err = run_cli(capsys, "data", "prepare", "surreal", str(raw), str(out), "--stride", "3", "--no-progress")
    assert code == 1
    assert any("01_01_c0002_info.mat" in line for line in err)
    assert len(load_surreal(out, split="train")) == 2  # the good clip still converted
    code, _, err = run_cli(capsys, "data", "prepare", "surreal", str(tmp_path / "nothing"), str(out))
    assert code == 2 and len(err) == 1


def test_prepare_surreal_refuses_other_settings_in_a_prepared_output(tmp_path, capsys):
    raw, out = tmp_path / "cmu", tmp_path / "surreal"
    make_raw_surreal(raw)
    code, _, err = run_cli(capsys, "data", "prepare", "surreal", str(raw), str(out), "--stride", "2", "--no-progress")
    assert code == 0, err
    code, _, err = run_cli(capsys, "data", "prepare", "surreal", str(raw), str(out), "--stride", "3", "--no-progress")
    assert code == 2 and len(err) == 1 and "--stride 2 -> 3" in err[0]

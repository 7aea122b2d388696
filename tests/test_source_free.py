"""The source-free stage 2 (``--preset source_free --init CKPT``): it adapts a given pose model on
the user's own COCO-format target images with the source files gone, from a posealign checkpoint
(with the source pose prior its stage 1 kept) or a plain state dict; a bad --init is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from posealign.alignment.pose_prior import fit_pose_prior, plausible_poses
from posealign.experiments import PlannedRun, _stage1_dependencies
from tests.test_cli_errors import NAMES, TINY, assert_one_line, run_cli, write_coco

SOURCE_FREE = [*TINY, "train.pretrain_steps=0", "train.adapt_steps=3"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A folder with a source_only run on data/synth (32 figures: enough poses for the prior) and
    the target images data/real; the source folder is then deleted."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("source_free")
    write_coco(base / "synth", "train", count=32)
    write_coco(base / "real", "train")
    write_coco(base / "real", "val", count=4)
    roots = [f"data.source_root={base / 'synth'}", f"data.target_root={base / 'real'}"]
    argv = ["train", "--preset", "source_only", "--task", "coco", "--out", str(base / "src"), *roots, *TINY]
    from posealign.cli import main

    assert main(argv) == 0
    shutil.rmtree(base / "synth")  # from here on no source file exists
    return base


def _source_free(capsys, base: Path, init: Path, out: str, *extra: str):
    return run_cli(
        capsys,
        "train",
        "--preset",
        "source_free",
        "--task",
        "coco",
        "--init",
        str(init),
        "--out",
        str(base / out),
        f"data.source_root={base / 'synth'}",  # the deleted folder: nothing may read it
        f"data.target_root={base / 'real'}",
        *SOURCE_FREE,
        *extra,
    )


def _batchnorm_statistics(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def test_adapts_on_own_target_images_without_the_source_files(pretrained, capsys):
    checkpoint = pretrained / "src" / "checkpoints" / "final.pt"
    stage1 = torch.load(checkpoint, weights_only=True)
    assert stage1["source_pose_prior"] is not None  # written at the end of stage 1
    code, out, err = _source_free(capsys, pretrained, checkpoint, "sf")
    assert code == 0, err
    run = pretrained / "sf"
    log = (run / "train.log").read_text()
    assert "posealign checkpoint, with a source pose prior" in log and "step 3 [train]" in log
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == 3 and "target" in results and "source" not in results
    adapted = torch.load(run / "checkpoints" / "final.pt", weights_only=True)
    changed = [
        k for k, v in stage1["student"].items() if k.endswith("weight") and not torch.equal(adapted["student"][k], v)
    ]
    assert {"backbone.0.weight", "head.weight"} <= set(changed), changed  # it trained, first layer to last
    # The source's BatchNorm statistics are kept (student_batchnorm: frozen, teacher bn_mode: copy).
    for network in ("student", "teacher"):
        for key, value in _batchnorm_statistics(stage1["student"]).items():
            assert torch.equal(adapted[network][key], value), (network, key)


def test_starts_from_a_plain_state_dict(pretrained, capsys, tmp_path):
    weights = torch.load(pretrained / "src" / "checkpoints" / "final.pt", weights_only=True)["student"]
    torch.save(weights, tmp_path / "model.pt")
    code, _, err = _source_free(capsys, pretrained, tmp_path / "model.pt", "sf_plain")
    assert code == 0, err
    log = (pretrained / "sf_plain" / "train.log").read_text()
    assert "state dict, without a source pose prior" in log and "step 3 [train]" in log


def test_a_bad_init_is_one_line_naming_the_file_and_the_difference(pretrained, capsys, tmp_path):
    weights = torch.load(pretrained / "src" / "checkpoints" / "final.pt", weights_only=True)["student"]
    code, _, err = _source_free(capsys, pretrained, tmp_path / "missing.pt", "bad1")
    assert_one_line(code, err, "missing.pt", "not found")
    code, _, err = _source_free(capsys, pretrained, pretrained / "src" / "checkpoints" / "final.pt", "bad2",
                                "model.deconv_channels=8")  # fmt: skip
    assert_one_line(code, err, "final.pt", "another architecture", "deconv")
    fewer = {k: (v[:4] if k.startswith("head.") else v) for k, v in weights.items()}
    torch.save(fewer, tmp_path / "four.pt")
    code, _, err = _source_free(capsys, pretrained, tmp_path / "four.pt", "bad3")
    assert_one_line(code, err, "four.pt", "predicts 4 keypoints", "has 6")
    assert not any((pretrained / name).exists() for name in ("bad1", "bad2", "bad3"))


def test_the_pose_prior_passes_source_like_poses_and_stops_scrambled_ones():
    generator = torch.Generator().manual_seed(0)
    template = torch.tensor([[0.0, 0.0], [0.0, 1.0], [-1.0, 2.0], [1.0, 2.0], [-0.5, 4.0], [0.5, 4.0]])
    poses = template + 0.05 * torch.randn(200, 6, 2, generator=generator)
    prior = fit_pose_prior(poses * 7 + 3, torch.ones(200, 6))  # where and how large: left out
    shifted = poses[:10] * 2 + 10
    scrambled = poses[:10][:, torch.tensor([4, 5, 2, 3, 0, 1])]  # the feet at the head
    kept = plausible_poses(prior, torch.cat([shifted, scrambled]), 0.5)
    assert kept.tolist() == [True] * 10 + [False] * 10
    assert fit_pose_prior(poses[:5], torch.ones(5, 6)) is None  # too few whole poses to fit


def test_ablate_orders_a_source_free_row_after_the_model_it_adapts(tmp_path):
    seed = tmp_path / "seed0"
    init = f"train.init={seed / 'source_only' / 'checkpoints' / 'final.pt'}"
    planned = [
        PlannedRun("source_free", "benchmark", seed / "source_free", (init,)),
        PlannedRun("source_only", "benchmark", seed / "source_only"),
    ]
    waits_for, _, files = _stage1_dependencies(planned)
    assert waits_for == [1, None] and files[0] == seed / "source_only" / "checkpoints" / "final.pt"
    assert NAMES  # the figures of write_coco: six keypoints

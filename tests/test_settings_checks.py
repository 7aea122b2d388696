"""Settings that would do nothing, and combinations that cannot run, are caught before a run starts:
a key typed on the command line for a level the run leaves off is a one-line error; the same kind of
setting from a task or preset (kept for every method on purpose) is one warning line in the run's
log; the reversal cap under torch.compile or DDP is a one-line error; a stage-2 checkpoint without
its calibrated pose temperature is refused. And the layers' order: a preset's setting wins over a
task's, the command line over both."""

from __future__ import annotations

import pytest
import torch

from posealign.benchmark.task import ensure_benchmark
from posealign.cli import main
from posealign.config import load_config
from posealign.config_checks import check_overrides_act, check_values, inactive_changes
from posealign.errors import UserError

# No data behind these roots: the checks must answer before any data is read.
MISSING_ROOTS = ["data.source_root=/nonexistent/source", "data.target_root=/nonexistent/target"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> list[str]:
    """Overrides for a tiny run on a tiny benchmark (generated once)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("benchmark")
    overrides = [
        "run.tensorboard=false",
        "run.progress=false",
        "run.num_workers=0",
        "data.image_size=32",
        "data.heatmap_size=32",
        "data.benchmark_sizes={source_train: 8, source_test: 4, target_train: 8, target_test: 4, target_val: 4}",
        "train.batch_size=4",
        f"data.benchmark_root={root}",
    ]
    ensure_benchmark(load_config("source_only", "benchmark", overrides))
    return overrides


def one_error_line(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_a_typed_setting_of_a_level_that_is_off_is_an_error(capsys, tmp_path):
    argv = ["train", "--preset", "source_only", "--task", "coco", "--out", str(tmp_path / "run"), *MISSING_ROOTS]
    err = one_error_line(capsys, [*argv, "align.feature.weight=0.5"])
    assert err == (
        "posealign train: error: align.feature.weight: does nothing in preset 'source_only' "
        "(mean_teacher.enabled=false, align.feature.enabled=false); drop it, or choose a preset that turns its level on"
    )
    err = one_error_line(capsys, [*argv[:2], "mean_teacher", *argv[3:], "align.pose.diversity_weight=0"])
    assert "align.pose.diversity_weight: does nothing in preset 'mean_teacher' (align.pose.enabled=false)" in err
    err = one_error_line(capsys, [*argv, "mean_teacher.momentum=0.9"])
    assert "mean_teacher.momentum: does nothing" in err
    err = one_error_line(capsys, [*argv, "mean_teacher.occlusion.probability=0.1"])  # inside a section
    assert "mean_teacher.occlusion.probability: does nothing" in err
    # The level's own switch, and settings of levels that are on, pass (to the missing data root).
    for ok in ("align.feature.enabled=false", "train.batch_size=2"):
        assert "/nonexistent/source" in one_error_line(capsys, [*argv, ok])
    err = one_error_line(capsys, [*argv[:2], "daml", *argv[3:], "align.pose.diversity_weight=0"])
    assert "/nonexistent/source" in err
    assert not (tmp_path / "run").exists()


def test_an_experiments_setting_is_an_error_only_when_no_run_uses_it(capsys, tmp_path):
    argv = ["ablate", "--out", str(tmp_path / "ablate"), "--task", "coco", *MISSING_ROOTS]
    err = one_error_line(capsys, [*argv, "--rows", "source_only", "oracle", "align.pose.weight=1"])
    assert err == (
        "posealign ablate: error: align.pose.weight: does nothing in any of the runs ['source_only', 'oracle'] "
        "(its level is off in each); drop it"
    )
    # mt_image_pose uses it, source_only does not (its log says so): no error from this check.
    err = one_error_line(capsys, [*argv, "--rows", "source_only", "mt_image_pose", "align.pose.weight=1"])
    assert "/nonexistent/source" in err
    configs = {row: load_config(row, "benchmark", ["align.pose.weight=1"]) for row in ("source_only", "daml")}
    check_overrides_act(configs, ["align.pose.weight=1"])
    with pytest.raises(UserError, match="align.pose: does nothing in any of the runs"):
        check_overrides_act({"a": configs["source_only"], "b": configs["source_only"]}, ["align.pose={weight: 1}"])


def test_a_tasks_settings_for_a_level_that_is_off_are_one_warning_line_in_the_log(tiny, tmp_path, capsys):
    # The benchmark task sets the discriminator and the image encoder for every preset.
    changes = inactive_changes(load_config("source_only", "benchmark"))
    assert changes == {
        "mean_teacher.momentum": "mean_teacher.enabled=false",
        "align.image.encoder": "align.image.enabled=false",
        "align.feature.weight": "mean_teacher.enabled=false, align.feature.enabled=false",
        "align.feature.grl": "mean_teacher.enabled=false, align.feature.enabled=false",
        "align.feature.channels": "mean_teacher.enabled=false, align.feature.enabled=false",
    }
    assert inactive_changes(load_config("daml", "benchmark")) == {}
    out = tmp_path / "run"
    argv = ["train", "--preset", "source_only", "--task", "benchmark", "--out", str(out), *tiny]
    assert main([*argv, "train.pretrain_steps=1"]) == 0
    warnings = [line for line in (out / "train.log").read_text().splitlines() if "warning:" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith(
        "warning: settings of levels that are off change nothing in this run: mean_teacher.momentum "
        "(mean_teacher.enabled=false); align.image.encoder (align.image.enabled=false); align.feature.weight, "
        "align.feature.grl, align.feature.channels (mean_teacher.enabled=false, align.feature.enabled=false)"
    )


@pytest.mark.parametrize("setting", ["run.compile=true", "ranks"])
def test_the_reversal_cap_cannot_run_compiled_or_under_ddp(setting, monkeypatch):
    overrides = ["run.compile=true"] if setting == "run.compile=true" else []
    if setting == "ranks":
        monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets for two ranks
    config = load_config("mt_image_feature_joint", "benchmark", overrides)
    with pytest.raises(UserError) as raised:
        check_values(config, check_roots=False)
    assert str(raised.value).startswith("align.feature.reversal_cap=3.0 needs a gradient measurement at every step")
    assert "pass align.feature.reversal_cap=null" in str(raised.value)
    check_values(load_config("mt_image_feature", "benchmark", overrides), check_roots=False)  # no cap: runs
    capped_but_off = load_config("mt_image_feature_joint", "benchmark", [*overrides, "align.feature.enabled=false"])
    check_values(capped_but_off, check_roots=False)


def test_a_presets_setting_wins_over_the_tasks(tmp_path):
    task, preset = tmp_path / "task.yaml", tmp_path / "preset.yaml"
    task.write_text("inherit: benchmark\nalign: {feature: {weight: 0.5, lr: 0.5}}\ndata: {sigma: 3.0}\n")
    preset.write_text("inherit: daml\nalign: {feature: {weight: 0.25}}\n")
    config = load_config(str(preset), str(task), ["align.feature.lr=0.125"])
    assert config.align.feature.weight == 0.25  # the preset's, over the task's
    assert config.align.feature.lr == 0.125  # the command line's, over both
    assert config.data.sigma == 3.0  # the task's, where the preset says nothing


def test_a_stage_two_checkpoint_without_its_calibrated_temperature_is_refused(tiny, tmp_path, capsys):
    schedule = ["train.pretrain_steps=2", "train.adapt_steps=2", "run.checkpoint_every=3"]
    run = tmp_path / "run"
    argv = ["train", "--preset", "mt_image_pose_tau", "--task", "benchmark", *tiny, *schedule]
    assert main([*argv, "--out", str(run)]) == 0
    state = torch.load(run / "checkpoints" / "step_0000003.pt", map_location="cpu", weights_only=False)
    assert 0 < state["pose_temperature"] < 1  # calibrated when stage 2 began
    state["pose_temperature"] = None  # as a checkpoint written before the temperature was saved
    checkpoint = tmp_path / "untempered.pt"
    torch.save(state, checkpoint)
    capsys.readouterr()
    err = one_error_line(capsys, [*argv, "--out", str(tmp_path / "resumed"), "--resume", str(checkpoint)])
    assert err == (
        f"posealign train: error: {checkpoint}: checkpoint of stage 2 (step 3) holds no calibrated pose temperature "
        "(align.pose.calibrate_temperature_to), so its run cannot go on as it was; resume from a checkpoint of "
        "stage 1 (step 2 or before) or train again"
    )

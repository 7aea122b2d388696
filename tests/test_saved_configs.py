"""Saved configs carry a format version: a run saved before a default stopped being what it did is
never taken for a run of today (its results are not reused, ``--resume`` is a one-line error that
says how to keep its behaviour), and options removed since load when the run left them alone."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from posealign.benchmark.task import ensure_benchmark
from posealign.cli import main
from posealign.config import CONFIG_ROOT, REMOVED_OPTIONS, load_config, read_saved_config, resolved
from posealign.engine.run_directory import comparable_config, load_saved_config
from posealign.errors import UserError
from posealign.experiments import run_preset
from posealign.losses.consistency import consistency_loss

TINY = [
    "run.tensorboard=false",
    "run.progress=false",
    "run.num_workers=0",
    "run.checkpoint_every=2",
    "data.image_size=32",
    "data.heatmap_size=32",
    "data.benchmark_sizes={source_train: 16, source_test: 8, target_train: 16, target_test: 8, target_val: 8}",
    "train.batch_size=8",
    "train.pretrain_steps=2",
    "train.adapt_steps=2",
]
# What keeps the behaviour of a run saved without the two options.
OLD_BEHAVIOUR = ["mean_teacher.student_batchnorm=joint", "mean_teacher.consistency_mask=zero_outside"]


def overrides(benchmark_root: Path, *extra: str) -> list[str]:
    return [*TINY, f"data.benchmark_root={benchmark_root}", *extra]


def train(out: Path, benchmark_root: Path, *extra: str) -> tuple[int, str]:
    argv = ["train", "--preset", "mean_teacher", "--task", "benchmark", "--out", str(out)]
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        code = main([*argv, *overrides(benchmark_root, *extra)])
    return code, errors.getvalue()


@pytest.fixture(scope="module")
def benchmark_root(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("benchmark")
    ensure_benchmark(load_config("mean_teacher", "benchmark", overrides(root)))
    return root


@pytest.fixture(scope="module")
def finished_run(benchmark_root, tmp_path_factory) -> Path:
    """A finished mean-teacher run of today (config.yaml, results.json, step and final checkpoints)."""
    out = tmp_path_factory.mktemp("today") / "run"
    assert train(out, benchmark_root) == (0, "")
    return out


def as_saved_before_the_format_version(run: Path, to: Path) -> Path:
    """A copy of ``run`` as posealign wrote it before configs had a format version and before the
    student's BatchNorm and the consistency mask were options: neither key in config.yaml nor in
    the checkpoints' configs, no ``format_version`` anywhere."""
    shutil.copytree(run, to)
    config = OmegaConf.load(to / "config.yaml")
    assert config.pop("format_version") == 2
    for key in ("student_batchnorm", "consistency_mask"):
        del config.mean_teacher[key]
    (to / "config.yaml").write_text(OmegaConf.to_yaml(config))
    for checkpoint in (to / "checkpoints").glob("*.pt"):
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        assert state.pop("format_version") == 2
        for key in ("student_batchnorm", "consistency_mask"):
            del state["config"]["mean_teacher"][key]
        torch.save(state, checkpoint)
    return to


OLD_RUN_MESSAGE = (
    "config.yaml was saved without mean_teacher.student_batchnorm (whose default changed from joint to "
    "per_domain) and mean_teacher.consistency_mask (whose default changed from zero_outside to valid_pixels): "
    "rerun it into another --out (or delete it), or pass mean_teacher.student_batchnorm=joint "
    "mean_teacher.consistency_mask=zero_outside to keep its behaviour"
)


def test_a_run_of_today_is_saved_with_its_format_and_reused(finished_run, benchmark_root, capsys):
    assert (finished_run / "config.yaml").read_text().startswith("format_version: 2\n")
    assert torch.load(finished_run / "checkpoints" / "final.pt", weights_only=False)["format_version"] == 2
    config = load_config("mean_teacher", "benchmark", overrides(benchmark_root, f"run.out={finished_run}"))
    assert comparable_config(load_saved_config(finished_run / "config.yaml")) == comparable_config(config)
    results = run_preset("mean_teacher", "benchmark", finished_run, overrides(benchmark_root))
    assert "finished run found" in capsys.readouterr().out and results["steps"] == 4


def test_an_old_run_is_not_reused_and_not_resumed_under_the_new_defaults(finished_run, benchmark_root, tmp_path):
    old = as_saved_before_the_format_version(finished_run, tmp_path / "old")
    # What ablate and demo do with each row: its results stand for the run only if the configs match.
    with pytest.raises(UserError) as refused:
        run_preset("mean_teacher", "benchmark", old, overrides(benchmark_root))
    assert str(refused.value) == f"{old}/{OLD_RUN_MESSAGE}"
    code, stderr = train(old, benchmark_root, "--resume", "auto")
    assert code == 2 and stderr == f"posealign train: error: {old}/{OLD_RUN_MESSAGE}\n"
    # Its checkpoint, resumed into another folder, is refused the same way.
    checkpoint = old / "checkpoints" / "step_0000002.pt"
    code, stderr = train(tmp_path / "elsewhere", benchmark_root, "--resume", str(checkpoint))
    assert code == 2 and stderr.count("\n") == 1
    assert f"{checkpoint} was saved without mean_teacher.student_batchnorm" in stderr


def test_an_old_run_continues_with_the_behaviour_it_had(finished_run, benchmark_root, tmp_path):
    old = as_saved_before_the_format_version(finished_run, tmp_path / "old")
    assert run_preset("mean_teacher", "benchmark", old, overrides(benchmark_root, *OLD_BEHAVIOUR))["steps"] == 4
    (old / "results.json").unlink()  # stopped before its end: it goes on from its step-2 checkpoint
    assert train(old, benchmark_root, *OLD_BEHAVIOUR, "--resume", "auto") == (0, "")


def test_options_removed_since_load_at_the_value_runs_had_without_them(tmp_path):
    defaults = OmegaConf.load(str(CONFIG_ROOT / "default.yaml"))
    today = OmegaConf.to_container(resolved(load_config("daml", "benchmark", [f"run.out={tmp_path}"])))
    for key in REMOVED_OPTIONS:  # the defaults and configs of today, without the removed options
        parent, _, leaf = key.rpartition(".")
        OmegaConf.select(defaults, parent).pop(leaf, None)
        node = today
        for part in parent.split("."):
            node = node[part]
        node.pop(leaf, None)
    saved = OmegaConf.create(today)
    for key, value in REMOVED_OPTIONS.items():
        OmegaConf.update(saved, key, value, force_add=True)
    loaded = read_saved_config(saved, "runs/x/config.yaml", defaults=defaults)
    assert comparable_config(loaded.config) == comparable_config(OmegaConf.create(today))

    OmegaConf.update(saved, "align.feature.layer", "backbone")
    with pytest.raises(UserError) as refused:
        read_saved_config(saved, "runs/x/config.yaml", defaults=defaults)
    assert str(refused.value) == (
        "runs/x/config.yaml: the run used align.feature.layer=backbone, an option that no longer exists; "
        "rerun it into another --out"
    )


def test_zero_outside_is_the_consistency_loss_of_runs_saved_without_the_option():
    torch.manual_seed(4)
    student, teacher = torch.rand(2, 3, 5, 5), torch.rand(2, 3, 5, 5)
    gate, valid = torch.rand(2, 3) > 0.4, torch.rand(2, 1, 5, 5) > 0.3
    # The formula those runs trained with: the gated difference, zero outside the valid pixels, its
    # square averaged over every keypoint and pixel of the batch.
    total = 0.0
    for b in range(2):
        for k in range(3):
            for y in range(5):
                for x in range(5):
                    if gate[b, k] and valid[b, 0, y, x]:
                        total += float(student[b, k, y, x] - teacher[b, k, y, x]) ** 2
    expected = total / (2 * 3 * 5 * 5)
    assert consistency_loss(student, teacher, gate, valid, mask="zero_outside").item() == pytest.approx(expected)

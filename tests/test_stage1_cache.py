"""The stage-1 cache (``run.pretrain_cache``): a run that starts from another preset's cached stage 1
ends exactly where training it alone ends, for every pair of presets that share one in ``demo`` and
``ablate``; the key holds what changes stage 1, and a cached stage 1 of other data is not reused.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from posealign.benchmark.task import ensure_benchmark
from posealign.cli import main
from posealign.cli.ablate_command import ABLATION_ROWS
from posealign.cli.demo_command import DEMO_METHODS
from posealign.config import load_config
from posealign.engine.stage1_cache import pretraining_key

TINY = [
    "run.tensorboard=false",
    "run.progress=false",
    "run.num_workers=0",
    "run.log_every=100",
    "run.checkpoint_every=100",
    "run.seed=5",
    "data.image_size=32",
    "data.heatmap_size=32",
    "data.benchmark_sizes={source_train: 48, source_test: 8, target_train: 48, target_test: 8, target_val: 8}",
    "train.batch_size=8",
    # 6 batches an epoch: after stage 1 the target stream stands 3 batches in, not at its start.
    "train.pretrain_steps=3",
    "train.adapt_steps=2",
]


def sharing_pairs(presets: tuple[str, ...]) -> list[tuple[str, str]]:
    """(the preset that trains a stage 1, a later one that reuses it), in the order the command runs them."""
    first_with_key: dict[str, str] = {}
    pairs = []
    for preset in presets:
        key = pretraining_key(load_config(preset, "benchmark", ["run.pretrain_cache=cache"]))
        if key in first_with_key:
            pairs.append((first_with_key[key], preset))
        else:
            first_with_key[key] = preset
    return pairs


PAIRS = sorted(set(sharing_pairs(DEMO_METHODS)) | set(sharing_pairs(ABLATION_ROWS)))


def test_the_pairs_are_those_the_commands_share():
    # The mean teacher reuses source_only's stage 1, which has no target stream.
    assert PAIRS == [
        ("daml", "daml_plus"),
        ("source_only", "mean_teacher"),
        ("source_only_image", "daml"),
        ("source_only_image", "mt_image"),
        ("source_only_image", "mt_image_feature"),
        ("source_only_image", "mt_image_pose"),
    ]


@pytest.fixture(scope="module")
def benchmark_root(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("benchmark")
    ensure_benchmark(load_config("daml", "benchmark", [*TINY, f"data.benchmark_root={root}"]))
    return root


def train(out: Path, preset: str, benchmark_root: Path, cache: Path, *overrides: str) -> str:
    """``posealign train`` in this process; returns what it printed."""
    argv = ["train", "--preset", preset, "--task", "benchmark", "--out", str(out), *TINY]
    argv += [f"data.benchmark_root={benchmark_root}", f"run.pretrain_cache={cache}", *overrides]
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        assert main(argv) == 0
    return console.getvalue()


@pytest.fixture(scope="module")
def trained(benchmark_root, tmp_path_factory):
    """Each preset trained alone (its own empty cache, which it fills), once per module: the run a
    reusing run must equal, and the cache entry it reuses."""
    runs: dict[str, Path] = {}
    folder = tmp_path_factory.mktemp("alone")

    def run(preset: str) -> Path:
        if preset not in runs:
            printed = train(folder / preset, preset, benchmark_root, folder / f"cache_{preset}")
            assert "reusing" not in printed
            runs[preset] = folder / preset
        return runs[preset]

    return run


def results(run_dir: Path) -> dict:
    numbers = json.loads((run_dir / "results.json").read_text())
    numbers.pop("train_seconds")
    return numbers


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)


# `demo --methods` and `ablate --rows` take any order: the stage 1 of a run with a teacher (and a
# discriminator, a calibrated pose level) feeds a run without one just as well.
REVERSED = [("mean_teacher", "source_only"), ("mt_image", "source_only_image"), ("daml_plus", "daml")]


@pytest.mark.parametrize(("producer", "consumer"), PAIRS + REVERSED, ids=[f"{a}->{b}" for a, b in PAIRS + REVERSED])
def test_a_run_from_a_shared_stage_one_equals_the_run_alone(producer, consumer, trained, benchmark_root, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(trained(producer).parent / f"cache_{producer}", cache)
    alone = trained(consumer)
    assert "reusing stage 1" in train(tmp_path / consumer, consumer, benchmark_root, cache)
    assert len(list(cache.iterdir())) == 1  # nothing of its own written: it started at stage 2

    assert results(tmp_path / consumer) == results(alone)
    reused, expected = final_state(tmp_path / consumer), final_state(alone)
    assert reused["step"] == expected["step"]
    for network in ("student", "teacher", "discriminator"):
        assert (reused[network] is None) == (expected[network] is None), network
        for name, tensor in (expected[network] or {}).items():
            assert torch.equal(reused[network][name], tensor), f"{network}.{name}"
    assert reused["data"] == expected["data"]  # both streams where the run alone left them


def test_the_key_holds_what_changes_stage_one_and_only_that():
    def key(preset: str = "mean_teacher", *overrides: str) -> str:
        return pretraining_key(load_config(preset, "benchmark", ["run.pretrain_cache=cache", *overrides]))

    # Settings of stage 2 alone leave the key as it is.
    for override in ("optim.adapt_lr=1.0e-5", "train.adapt_steps=7", "mean_teacher.momentum=0.5"):
        assert key("mean_teacher", override) == key(), override
    assert key("daml", "align.feature.channels=[8,8,8]") == key("daml")
    # A stylized stage 1 is another one; so is one on other benchmark data, other ranks' BatchNorm, another device.
    changes = (
        "run.sync_batchnorm=true",
        "data.benchmark_sizes={source_train: 40, source_test: 8, target_train: 48, target_test: 8, target_val: 8}",
        "data.benchmark_seed=1",
        "data.benchmark_body=quadruped",
        "run.device=cpu",
        "run.compile=true",
        "train.pretrain_steps=2",
    )
    for override in changes:
        assert key("mean_teacher", override) != key(), override
    assert key("daml") != key()
    assert len({key(preset) for preset in ("source_only", "source_only_image", "oracle")}) == 3


def test_a_stage_one_from_a_starting_model_is_keyed_by_its_bytes(tmp_path):
    def key(*overrides: str) -> str:
        return pretraining_key(load_config("mean_teacher", "benchmark", ["run.pretrain_cache=cache", *overrides]))

    first, copy_of_first, second = tmp_path / "a.pt", tmp_path / "copy.pt", tmp_path / "b.pt"
    torch.save({"w": torch.zeros(3)}, first)
    shutil.copy(first, copy_of_first)
    torch.save({"w": torch.ones(3)}, second)
    assert key(f"train.init={first}") != key()  # trained from that model, not from ImageNet or random weights
    assert key(f"train.init={first}") == key(f"train.init={copy_of_first}")  # the same bytes elsewhere
    assert key(f"train.init={first}") != key(f"train.init={second}")


def test_a_cached_stage_one_of_other_annotations_is_not_reused(benchmark_root, tmp_path):
    root, cache = tmp_path / "benchmark", tmp_path / "cache"
    shutil.copytree(benchmark_root, root)
    assert "reusing" not in train(tmp_path / "first", "source_only", root, cache)
    # The same root and split, rewritten: one keypoint moved by a pixel.
    annotations = root / "annotations" / "source_train.json"
    coco = json.loads(annotations.read_text())
    coco["annotations"][0]["keypoints"][0] += 1
    annotations.write_text(json.dumps(coco))
    printed = train(tmp_path / "second", "source_only", root, cache)
    assert "was trained on other data" in printed and "reusing" not in printed
    assert len(list(cache.iterdir())) == 1

"""The paper's code path on the built-in benchmark (task ``benchmark_paper_scale``): ResNet-101 at
256/64 with the released discriminator and loss weights, bf16 autocast, through both stages on the
CPU at two steps. The same command runs the paper's settings on a GPU in minutes."""

from __future__ import annotations

import json
import math

import torch

from posealign.cli import main
from posealign.config import load_config

TINY_DATA = "data.benchmark_sizes={source_train: 4, source_test: 2, target_train: 4, target_test: 2, target_val: 2}"


def test_paper_scale_task_has_the_paper_settings():
    config = load_config("daml", "benchmark_paper_scale", ["run.out=/tmp/x"])
    assert (config.model.backbone, config.model.backbone_stages, config.model.deconv_channels) == ("resnet101", 4, 256)
    assert (config.data.image_size, config.data.heatmap_size, config.data.sigma) == (256, 64, 2.0)
    assert list(config.align.feature.channels) == [256, 128, 128] and config.align.feature.weight == 0.1
    assert config.align.feature.grl == "constant" and config.align.pose.weight == 0.3
    assert config.train.batch_size == 32 and config.run.amp == "bf16" and config.optim.lr == 1.0e-4
    assert config.align.image.encoder == "patch"  # the weight-free image level: no download


def test_paper_scale_daml_trains_both_stages_in_bf16(tmp_path):
    out = tmp_path / "daml"
    argv = ["train", "--preset", "daml", "--task", "benchmark_paper_scale", "--out", str(out), TINY_DATA]
    argv += ["run.progress=false", "run.tensorboard=false", "run.num_workers=0", "run.log_every=1"]
    argv += ["train.batch_size=2", "train.pretrain_steps=1", "train.adapt_steps=1"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    adapt = next(r for r in rows if r.get("stage") == "adapt")
    for term in ("loss_sup", "loss_cons", "loss_adv", "loss_im"):
        assert math.isfinite(adapt[term])
    assert abs(adapt["loss_adv"] - 2 * math.log(2)) < 0.1  # a fresh discriminator: two BCEs at chance
    state = torch.load(out / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    student = state["student"]
    assert "backbone.6.22.conv3.weight" in student  # layer3 (index 6) has 23 blocks in ResNet-101
    assert student["deconv.0.weight"].shape == (2048, 256, 4, 4)
    assert state["config"]["run"]["amp"] == "bf16"
    assert json.loads((out / "results.json").read_text())["steps"] == 2

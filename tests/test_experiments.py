"""``posealign demo`` and ``posealign ablate`` end to end on a tiny benchmark: their tables, the files
they write, the mean and spread over seeds, the share of the gap closed, and reuse of finished runs.
"""

from __future__ import annotations

import json
import statistics

import pytest
from omegaconf import OmegaConf

from posealign.cli import main
from posealign.experiments import gap_closed

TINY = [
    "run.tensorboard=false",
    "run.progress=false",
    "run.num_workers=0",
    "data.image_size=32",
    "data.heatmap_size=32",
    "data.benchmark_sizes={source_train: 32, source_test: 8, target_train: 32, target_test: 8}",
    "train.batch_size=4",
    "train.pretrain_steps=2",
    "train.adapt_steps=2",
]


def test_gap_closed_is_the_share_between_source_only_and_oracle():
    rows = {name: {"target": {"pck": pck}} for name, pck in [("source_only", 20.0), ("oracle", 70.0), ("daml", 45.0)]}
    assert gap_closed(rows) == {"daml": 50.0}
    assert gap_closed({"daml": rows["daml"], "oracle": rows["oracle"]}) == {}
    rows["oracle"]["target"]["pck"] = 20.0  # no gap: no share
    assert gap_closed(rows) == {}


def test_demo_table_results_and_reuse(tmp_path, capsys):
    out = tmp_path / "demo"
    # key=value after --methods: argparse would take them as method names.
    argv = ["demo", "--out", str(out), "--methods", "source_only", "oracle", "mean_teacher", "daml", *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["source_only", "oracle", "mean_teacher", "daml"]
    for name, row in results.items():
        assert f"\n{name} " in printed
        run = json.loads((out / name / "results.json").read_text())
        assert row["target"]["pck"] == run["target"]["pck"]
        assert row["source"]["pck"] == run["source"]["pck"]
        assert run["steps"] == (2 if name in ("source_only", "oracle") else 4)
    low, high = results["source_only"]["target"]["pck"], results["oracle"]["target"]["pck"]
    if high > low:
        expected = 100 * (results["daml"]["target"]["pck"] - low) / (high - low)
        assert results["daml"]["gap_closed"] == pytest.approx(expected)
        assert "share of the source-only -> oracle gap closed: mean_teacher" in printed
    assert (out / "report" / "report.md").is_file()
    # Three stage 1s: source_only's (the mean teacher starts from it), the oracle's (target labels)
    # and the stylized one of daml.
    assert len(list((out / "pretrain_cache").glob("pretrain_*.pt"))) == 3
    assert printed.count("reusing stage 1") == 1

    before = (out / "results.json").read_text()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished run found") == 4
    assert (out / "results.json").read_text() == before


def test_ablate_mean_and_spread_over_seeds(tmp_path, capsys):
    out = tmp_path / "ablate"
    argv = ["ablate", "--out", str(out), "--seeds", "2", "--rows", "source_only", "mean_teacher", "oracle", *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "mean ± std over 2 seed(s)" in printed
    summary = json.loads((out / "ablation.json").read_text())
    assert list(summary) == ["source_only", "mean_teacher", "oracle"]
    for name, row in summary.items():
        per_seed = [json.loads((out / f"seed{s}" / name / "results.json").read_text())["target"]["pck"] for s in (0, 1)]
        assert row["per_seed"] == per_seed
        assert row["target"]["pck"] == pytest.approx(statistics.fmean(per_seed))
        assert row["std"]["All"] == pytest.approx(statistics.stdev(per_seed))
        assert [OmegaConf.load(out / f"seed{s}" / name / "config.yaml").run.seed for s in (0, 1)] == [0, 1]
    if summary["oracle"]["target"]["pck"] > summary["source_only"]["target"]["pck"]:
        assert summary["mean_teacher"]["gap_closed"] == pytest.approx(gap_closed(summary)["mean_teacher"])

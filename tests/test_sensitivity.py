"""``posealign ablate --vary``: its parser, the grid of runs and their overrides, the table's mean ±
std, the report's figure, and one tiny real sweep whose runs share their stage 1."""

from __future__ import annotations

import json

import pytest
from tiny_runs import TINY_BENCHMARK

from posealign.cli import main
from posealign.config import load_config, save_config
from posealign.errors import UserError
from posealign.report import uses_log_axis, write_report
from posealign.sensitivity import Sweep, parse_vary, plan_grid

TINY = [*TINY_BENCHMARK, "train.pretrain_steps=2", "train.adapt_steps=2"]


def test_parse_vary_reads_each_key_and_refuses_malformed_ones():
    assert parse_vary(["align.pose.weight=0.1, 0.3,1.0", "mean_teacher.consistency_weight=2"]) == [
        Sweep("align.pose.weight", ("0.1", "0.3", "1.0")),
        Sweep("mean_teacher.consistency_weight", ("2",)),
    ]
    refused = {
        "align.pose.weight": "expected KEY=V1,V2",
        "=0.1,0.3": "expected KEY=V1,V2",
        "align.pose.weight=0.1,,0.3": "an empty value",
        "align.pose.weight=0.1,0.3,0.1": "0.1 listed twice",
        "run.seed=1,2": "--seeds and --first-seed",
    }
    for item, message in refused.items():
        with pytest.raises(UserError, match=message):
            parse_vary([item])
    with pytest.raises(UserError, match="given twice"):
        parse_vary(["align.pose.weight=0.1", "align.pose.weight=0.3"])


def test_the_grid_trains_each_value_once_per_seed_with_its_override(tmp_path):
    preset = load_config("daml", "benchmark", [f"run.out={tmp_path}"])
    assert preset.align.feature.weight == 0.02 and preset.mean_teacher.consistency_weight == 1.0
    sweeps = parse_vary(["align.feature.weight=0.006,0.020,0.06", "mean_teacher.consistency_weight=1,3.0"])
    planned = plan_grid(sweeps, "daml", "benchmark", tmp_path, ["x.shared=1"], range(3, 5), preset)
    expected = {}
    for seed in (3, 4):
        base = ("x.shared=1", f"run.seed={seed}")
        # The preset's own values (0.020 and 1 read as 0.02 and 1.0) are one run, shared by both curves.
        expected[tmp_path / f"seed{seed}" / "daml"] = base
        expected[tmp_path / f"seed{seed}" / "align.feature.weight=0.006"] = (*base, "align.feature.weight=0.006")
        expected[tmp_path / f"seed{seed}" / "align.feature.weight=0.06"] = (*base, "align.feature.weight=0.06")
        cons = "mean_teacher.consistency_weight=3.0"
        expected[tmp_path / f"seed{seed}" / cons] = (*base, cons)
    assert {run.out: run.overrides for run in planned} == expected
    assert len(planned) == len(expected)  # no run twice
    assert {(run.preset, run.task) for run in planned} == {("daml", "benchmark")}


# Per (folder name, seed): target PCK; target_val reads 10 more.
KNOWN_PCK = {
    ("daml", 0): 40.0,
    ("daml", 1): 44.0,
    ("mean_teacher.consistency_weight=0.5", 0): 30.0,
    ("mean_teacher.consistency_weight=0.5", 1): 36.0,
    ("mean_teacher.consistency_weight=10.0", 0): 20.0,
    ("mean_teacher.consistency_weight=10.0", 1): 20.0,
}


def test_table_and_figure_from_known_finished_runs(tmp_path, capsys):
    """Finished runs written here (their config as training saves it, their results.json) are reused
    as they stand: the table is their mean ± sample std, and the report draws them."""
    out = tmp_path / "sweep"
    shared = [f"run.pretrain_cache={out / 'pretrain_cache'}", *TINY, f"data.benchmark_root={out / 'benchmark'}"]
    for (name, seed), pck in KNOWN_PCK.items():
        folder = out / f"seed{seed}" / name
        extra = [name] if "=" in name else []
        folder.mkdir(parents=True)
        save_config(
            load_config("daml", "benchmark", [*shared, f"run.seed={seed}", *extra, f"run.out={folder}"]),
            folder / "config.yaml",
        )
        results = {"method": "daml", "target": {"pck": pck}, "target_val": {"pck": pck + 10}}
        (folder / "results.json").write_text(json.dumps(results))
    argv = ["ablate", "--out", str(out), "--seeds", "2", "--jobs", "1"]
    assert main([*argv, "--vary", "mean_teacher.consistency_weight=0.5,1.0,10.0", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "training" not in printed and printed.count("finished run found") == 6
    rows = {line.split()[0]: line.split()[1:] for line in printed.splitlines() if line.startswith("  ")}
    # 0.5: 30 and 36 -> 33 ± sqrt(18); 1.0 is the preset's run: 40 and 44 -> 42 ± sqrt(8); 10: 20 ± 0.
    assert rows["0.5"] == ["33.0", "±", "4.2", "43.0", "±", "4.2"]
    assert rows["1.0"] == ["(daml)", "42.0", "±", "2.8", "52.0", "±", "2.8"]
    assert rows["10.0"] == ["20.0", "±", "0.0", "30.0", "±", "0.0"]
    [sweep] = json.loads((out / "sensitivity.json").read_text())["sweeps"]
    assert sweep["preset_value"] == 1.0
    assert [p["target_per_seed"] for p in sweep["points"]] == [[30.0, 36.0], [40.0, 44.0], [20.0, 20.0]]
    assert sweep["points"][1]["runs"] == ["seed0/daml", "seed1/daml"]
    assert sweep["points"][0]["target_std"] == pytest.approx(18**0.5)

    page = write_report([out], tmp_path / "report")
    text = page.read_text()
    assert "| `mean_teacher.consistency_weight` | 1.0 (preset) | 42.0 ± 2.8 | 52.0 ± 2.8 |" in text
    assert "![sensitivity](sensitivity.png)" in text
    assert (tmp_path / "report" / "sensitivity.png").stat().st_size > 10_000


def test_log_axis_only_where_the_values_span_a_decade():
    assert uses_log_axis(["0.5", "1.0", "10.0"])
    assert uses_log_axis(["0.3", "1.0", "3.0"])  # 0.3x to 3x: one decade exactly
    assert not uses_log_axis(["0.1", "0.3", "0.6"])
    assert not uses_log_axis(["0", "1", "100"])  # a zero has no place on a log axis
    assert not uses_log_axis(["quantile", "random"])


def test_a_value_the_run_cannot_take_or_a_key_that_does_nothing_is_one_line(tmp_path, capsys):
    out = tmp_path / "sweep"
    cases = {
        "align.feature.weight=0.1,abc": "--vary align.feature.weight=abc: .* must be a number",
        "align.feature.wieght=0.1": "unknown config key 'align.feature.wieght'",
    }
    for vary, message in cases.items():
        assert main(["ablate", "--out", str(out), "--vary", vary, *TINY]) == 2
        assert message.split(".*")[-1] in capsys.readouterr().err
    argv = ["ablate", "--out", str(out), "--preset", "mean_teacher", "--vary", "align.pose.weight=0.1,1", *TINY]
    assert main(argv) == 2
    assert "align.pose.weight: does nothing in preset 'mean_teacher'" in capsys.readouterr().err
    argv = ["ablate", "--out", str(out), "--preset", "source_free", "--vary", "mean_teacher.consistency_weight=1,2"]
    assert main([*argv, *TINY]) == 2  # a source-free sweep has no model to adapt unless train.init names one
    assert "--vary with source_free: give the model every run adapts, train.init=CKPT" in capsys.readouterr().err
    assert not out.exists()  # refused before anything is written


def test_a_tiny_sweep_trains_each_value_from_one_shared_stage1(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["ablate", "--out", str(out), "--seeds", "1", "--jobs", "1", "--preset", "mean_teacher"]
    # One step a stage, no source test split: what is tested is the grid, not the training.
    shortest = [*TINY_BENCHMARK, "train.pretrain_steps=1", "train.adapt_steps=1", "data.eval.source=null"]
    assert main([*argv, "--vary", "mean_teacher.consistency_weight=0.5,1.0", *shortest]) == 0
    printed = capsys.readouterr().out
    changed, own = out / "seed0" / "mean_teacher.consistency_weight=0.5", out / "seed0" / "mean_teacher"
    assert json.loads((changed / "results.json").read_text())["method"] == "mean_teacher"
    assert "consistency_weight: 0.5" in (changed / "config.yaml").read_text()
    assert "consistency_weight: 1.0" in (own / "config.yaml").read_text()
    assert len(list((out / "pretrain_cache").glob("pretrain_*.pt"))) == 1  # one stage 1 for both values
    assert "reusing stage 1" in printed
    pcks = [json.loads((run / "results.json").read_text())["target"]["pck"] for run in (changed, own)]
    [sweep] = json.loads((out / "sensitivity.json").read_text())["sweeps"]
    assert [p["target"] for p in sweep["points"]] == pcks

"""``posealign demo`` and ``posealign ablate`` end to end on a tiny benchmark: their tables, the files
they write, the mean and spread over seeds, the share of the gap closed, and reuse of finished runs.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tiny_runs import TINY_BENCHMARK

from posealign.cli import main
from posealign.experiments import gap_closed
from posealign.keypoints import BODY16

TINY = [*TINY_BENCHMARK, "train.pretrain_steps=2", "train.adapt_steps=2"]


def test_gap_closed_is_the_share_between_source_only_and_oracle():
    rows = {name: {"target": {"pck": pck}} for name, pck in [("source_only", 20.0), ("oracle", 70.0), ("daml", 45.0)]}
    assert gap_closed(rows) == {"daml": 50.0}
    assert gap_closed({"daml": rows["daml"], "oracle": rows["oracle"]}) == {}
    rows["oracle"]["target"]["pck"] = 20.0  # no gap: no share
    assert gap_closed(rows) == {}


def test_demo_table_results_and_reuse(tmp_path, capsys):
    out = tmp_path / "demo"
    # key=value after --methods: argparse would take them as method names.
    argv = [
        "demo",
        "--out",
        str(out),
        "--jobs",
        "1",
        "--methods",
        "source_only",
        "oracle",
        "mean_teacher",
        "daml",
        *TINY,
    ]
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
    # The share of the gap is only defined when the oracle beats source-only; either way it must
    # be exactly (m - so) / (oracle - so) x 100 for the adapted methods and absent for the two ends.
    low, high = results["source_only"]["target"]["pck"], results["oracle"]["target"]["pck"]
    adapted = ("mean_teacher", "daml")
    expected = {m: 100 * (results[m]["target"]["pck"] - low) / (high - low) for m in adapted} if high > low else {}
    assert {name: row["gap_closed"] for name, row in results.items() if "gap_closed" in row} == pytest.approx(expected)
    assert ("share of the source-only -> oracle gap closed: mean_teacher" in printed) == bool(expected)
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
    argv = [
        "ablate",
        "--out",
        str(out),
        "--seeds",
        "2",
        "--jobs",
        "1",
        "--rows",
        "source_only",
        "mean_teacher",
        "oracle",
    ]
    assert main([*argv, *TINY]) == 0
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
        gaps = [
            json.loads((out / f"seed{s}" / name / "results.json").read_text())["domain_gap"]["proxy_a_distance"]
            for s in (0, 1)
        ]
        assert row["proxy_a_distance_per_seed"] == gaps
    assert "proxy A-distance, source vs target test crops" in printed
    low, high = summary["source_only"]["target"]["pck"], summary["oracle"]["target"]["pck"]
    middle = summary["mean_teacher"]["target"]["pck"]
    expected = {"mean_teacher": 100 * (middle - low) / (high - low)} if high > low else {}
    assert {name: row["gap_closed"] for name, row in summary.items() if "gap_closed" in row} == pytest.approx(expected)


# Per seed, the target PCK each row's (fake) run reports; group g (in BODY16 order) reports PCK + g.
FAKE_PCK = {"source_only": [20.0, 30.0], "mean_teacher": [40.0, 44.0], "oracle": [60.0, 65.0]}
# Per seed, the proxy A-distance each run reports; None: a run saved without the measurement.
FAKE_GAP = {"source_only": [1.9, 1.7], "mean_teacher": [1.2, 1.6], "oracle": [1.5, None]}


def test_ablate_numbers_from_known_runs(tmp_path, capsys, monkeypatch):
    """Means, sample standard deviations and the gap share of known per-seed numbers, by hand."""
    groups = list(BODY16.groups)

    def fake_run(preset, task, out, overrides):
        seed = int(next(o for o in overrides if o.startswith("run.seed=")).split("=")[1])
        pck = FAKE_PCK[preset][seed]
        target = {"pck": pck, "groups": {g: pck + i for i, g in enumerate(groups)}}
        # target_val reads 1 more than target: its table must show its own numbers, not target's.
        target_val = {"pck": pck + 1, "groups": {g: pck + 1 + i for i, g in enumerate(groups)}}
        gap = FAKE_GAP[preset][seed]
        return {
            "method": preset,
            "target": target,
            "target_val": target_val,
            **({"domain_gap": {"proxy_a_distance": gap}} if gap is not None else {}),
        }

    monkeypatch.setattr("posealign.experiments.run_preset", fake_run)
    out = tmp_path / "ablate"
    argv = ["ablate", "--out", str(out), "--seeds", "2", "--jobs", "1", "--rows", *FAKE_PCK, *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "ablation.json").read_text())

    assert summary["source_only"]["per_seed"] == [20.0, 30.0]
    assert summary["source_only"]["target"]["pck"] == 25.0  # (20 + 30) / 2
    assert summary["source_only"]["std"]["All"] == pytest.approx(50**0.5)  # sample std: sqrt(2 x 5^2 / 1)
    assert summary["mean_teacher"]["target"]["pck"] == 42.0
    assert summary["mean_teacher"]["std"]["All"] == pytest.approx(8**0.5)
    assert summary["oracle"]["target"]["pck"] == 62.5
    assert summary["mean_teacher"]["target"]["groups"][groups[2]] == 44.0  # mean of 42 and 46
    assert summary["mean_teacher"]["std"][groups[2]] == pytest.approx(8**0.5)
    assert summary["mean_teacher"]["gap_closed"] == pytest.approx(100 * 17 / 37.5)  # (42 - 25) / (62.5 - 25)
    assert "gap_closed" not in summary["source_only"] and "gap_closed" not in summary["oracle"]
    assert "share of the source-only -> oracle gap closed: mean_teacher 45 %" in printed
    row = next(line for line in printed.splitlines() if line.startswith("source_only "))
    assert row.split()[-3:] == ["25.0", "±", "7.1"]  # the All column
    # The validation split's table comes after the reported one, with its own numbers.
    reported, validation = printed.split("Target validation split")
    assert "target_val" in validation.splitlines()[0]
    row = next(line for line in validation.splitlines() if line.startswith("source_only "))
    assert row.split()[-3:] == ["26.0", "±", "7.1"]
    assert summary["source_only"]["target_val_per_seed"] == [21.0, 31.0]
    # The domain gap: mean ± sample std per row; a row with a seed that has none is left out, not averaged short.
    assert summary["mean_teacher"]["proxy_a_distance_per_seed"] == [1.2, 1.6]
    assert "proxy_a_distance_per_seed" not in summary["oracle"]
    gap_line = next(line for line in reported.splitlines() if line.startswith("proxy A-distance"))
    assert gap_line.endswith("source_only 1.80 ± 0.14, mean_teacher 1.40 ± 0.28")  # sqrt(2 x 0.1^2), sqrt(2 x 0.2^2)


def test_ablate_from_a_first_seed_runs_those_seeds_only(tmp_path, capsys, monkeypatch):
    """--first-seed 5 --seeds 2 trains seeds 5 and 6 (in seed5/, seed6/): the held-out seeds on which
    a setting can be chosen without touching the seeds of the reported table."""
    seen = []

    def fake_run(preset, task, out, overrides):
        seed = int(next(o for o in overrides if o.startswith("run.seed=")).split("=")[1])
        seen.append((preset, seed, Path(out).parent.name))
        return {"method": preset, "target": {"pck": 10.0 * seed, "groups": {}}}

    monkeypatch.setattr("posealign.experiments.run_preset", fake_run)
    out = tmp_path / "ablate"
    argv = ["ablate", "--out", str(out), "--seeds", "2", "--first-seed", "5", "--jobs", "1", "--rows", "mean_teacher"]
    assert main([*argv, *TINY]) == 0
    assert sorted(seen) == [("mean_teacher", 5, "seed5"), ("mean_teacher", 6, "seed6")]
    assert "mean ± std over 2 seed(s) (5-6)" in capsys.readouterr().out
    assert json.loads((out / "ablation.json").read_text())["mean_teacher"]["per_seed"] == [50.0, 60.0]
    assert main(["ablate", "--out", str(out), "--first-seed", "-1", *TINY]) == 2
    assert "error: --first-seed -1: must be 0 or more" in capsys.readouterr().err


def test_runs_in_worker_processes_equal_runs_one_after_another(tmp_path):
    """run_presets with two one-thread workers gives the numbers of the same runs in this process at
    one thread, and the mean teacher still waits for, and reuses, source_only's stage 1."""
    import torch

    from posealign.benchmark.task import ensure_benchmark
    from posealign.experiments import PlannedRun, config_for, run_presets

    benchmark = [f"data.benchmark_root={tmp_path / 'benchmark'}", *TINY, "run.log_every=1"]
    ensure_benchmark(config_for("source_only", "benchmark", [*benchmark, f"run.out={tmp_path / 'probe'}"]))

    def plan(folder: str) -> list[PlannedRun]:
        shared = (*benchmark, f"run.pretrain_cache={tmp_path / folder / 'cache'}")
        rows = ("source_only", "mean_teacher", "oracle")  # the mean teacher reuses source_only's stage 1
        return [PlannedRun(row, "benchmark", tmp_path / folder / row, shared) for row in rows]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        in_process = run_presets(plan("sequential"), jobs=1)
    finally:
        torch.set_num_threads(threads)
    in_workers = run_presets(plan("parallel"), jobs=2, threads=1)
    for one, other in zip(in_process, in_workers, strict=True):
        assert one["method"] == other["method"]
        assert one["target"]["per_keypoint"] == other["target"]["per_keypoint"]
    for folder in ("sequential", "parallel"):
        teacher_log = (tmp_path / folder / "mean_teacher" / "metrics.jsonl").read_text().splitlines()
        stages = [json.loads(line).get("stage") for line in teacher_log]
        assert stages.count("adapt") == 2 and "pretrain" not in stages  # it reused source_only's stage 1

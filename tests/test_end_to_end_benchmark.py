"""benchmarks/end_to_end.py runs the real loader, step and trainer on a tiny benchmark on the CPU and
prints (and writes) the three rates side by side with the paper-schedule projection."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
TINY = [
    "--task",
    "benchmark",
    "--amp",
    "off",
    "--workers",
    "0",
    "--steps",
    "1",
    "--warmup",
    "1",
    "--device",
    "cpu",
    "train.batch_size=2",
    "data.image_size=32",
    "data.heatmap_size=32",
    "data.benchmark_sizes={source_train: 4, source_test: 2, target_train: 4, target_test: 2, target_val: 2}",
    "run.tensorboard=false",
    "run.log_every=1",  # the trainer phase runs two log intervals per stage
]


def test_end_to_end_benchmark_on_a_tiny_run(tmp_path):
    record_file = tmp_path / "figures.json"
    command = [sys.executable, str(REPOSITORY / "benchmarks" / "end_to_end.py"), "--out", str(tmp_path)]
    command += ["--json", str(record_file), *TINY]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPOSITORY, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    output = done.stdout
    assert "machine: " in output and "torch " in output and "no GPU" in output
    for row in ("loader", "step", "trainer"):
        assert any(line.startswith(row) for line in output.splitlines()), row
    assert "paper schedule (20000 + 15000 steps)" in output

    record = json.loads(record_file.read_text())
    assert record["preset"] == "daml" and record["batch_size"] == 2 and not record["compile"]
    figures = [record["loader"]["images_per_s"], record["projection"]["seconds"]]
    figures += [record[part][stage] for part in ("step", "trainer") for stage in ("pretrain", "adapt")]
    assert all(math.isfinite(value) and value > 0 for value in figures), figures
    # The trainer's short run went through both stages, one log interval of warm-up and one timed each.
    metrics = (tmp_path / "trainer" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in metrics if json.loads(line)["kind"] == "train"]
    assert steps == [1, 2, 3, 4] and record["trainer"]["log_every"] == 1
    assert record["trainer"]["startup_s"] > 0 and record["trainer"]["finish_s"] > 0
    assert "phases (s): config and benchmark" in output and record["loader"]["first_batch_s"] > 0
    projection = record["projection"]
    assert projection["checkpoints"] == 35000 // 200  # the benchmark task saves every 200 steps

    # benchmarks/gpu_check.py reads these files into its table.
    spec = importlib.util.spec_from_file_location("gpu_check", REPOSITORY / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    rendered = gpu_check.table([{"name": "daml", "status": "ok", "figures": record}])
    row = rendered.splitlines()[-1]
    assert row.startswith("| daml | ok | ") and f"{record['projection']['seconds'] / 60:.1f} |" in row
    assert f"{record['step']['pretrain']:.1f} / {record['step']['adapt']:.1f}" in row
    with pytest.raises(SystemExit, match="no measurement named \\['loader sart'\\]"):  # --only with a typo
        gpu_check.run_all(tmp_path, budget=1.0, steps=1, only=["loader start", "loader sart"])


def test_loader_start_probe_runs_on_the_cpu():
    """benchmarks/loader_start.py (a gpu_check row) times a loader's first batches; on the CPU only the
    fork row, on CUDA the rows after CUDA and with pinned memory too."""
    command = [sys.executable, str(REPOSITORY / "benchmarks" / "loader_start.py"), "--workers", "2", "--size", "32"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPOSITORY)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no GPU" in done.stdout
    seconds = [float(line.split()[-2]) for line in done.stdout.splitlines() if line.rstrip().endswith(" s")]
    assert len(seconds) == 1 and seconds[0] > 0

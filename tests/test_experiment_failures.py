"""Several runs as one experiment, when one of them goes wrong: a failed run stops the others at once
(each saves a checkpoint) and the error names its log and the runs that never started; a worker
stopped by Ctrl-C ends ``posealign ablate`` with 130 and a plain line, as ``posealign demo`` does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_runs import TINY_BENCHMARK, TINY_RUN

from posealign.benchmark.task import ensure_benchmark
from posealign.config import load_config
from posealign.errors import UserError
from posealign.experiments import PlannedRun, run_presets

TINY = TINY_BENCHMARK


@pytest.fixture(scope="module")
def benchmark_root(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("benchmark")
    ensure_benchmark(load_config("source_only", "benchmark", [*TINY, f"data.benchmark_root={root}"]))
    return root


def test_a_failed_run_stops_the_others_and_names_its_log_and_the_runs_not_started(benchmark_root, tmp_path):
    on_benchmark = (*TINY, f"data.benchmark_root={benchmark_root}")
    # Thousands of steps: it would train for minutes if nothing stopped it.
    long = PlannedRun("source_only", "benchmark", tmp_path / "long", (*on_benchmark, "train.pretrain_steps=3000"))
    # Long enough that the long run is in its training loop when the broken run starts after it.
    quick = PlannedRun("source_only", "benchmark", tmp_path / "quick", (*on_benchmark, "train.pretrain_steps=20"))
    # Fails at once (its data root does not exist), in the worker the quick run leaves free.
    missing = ["data.source_root=/nonexistent/source", "data.target_root=/nonexistent/target"]
    broken = PlannedRun("source_only", "coco", tmp_path / "broken", (*TINY_RUN, *missing, "train.pretrain_steps=1"))
    after = PlannedRun("oracle", "benchmark", tmp_path / "after", (*on_benchmark, "train.pretrain_steps=1"))
    with pytest.raises(UserError) as raised:
        run_presets([long, quick, broken, after], jobs=2, threads=1)
    message = str(raised.value)
    assert "\n" not in message
    log = tmp_path / "broken.error.log"  # it failed before its run folder existed
    assert message.startswith(f"source_only ({broken.out}) failed: ") and f"traceback in {log}" in message
    assert "Traceback" in log.read_text() and "/nonexistent/source" in log.read_text()
    assert not broken.out.exists()  # no folder left that would block the corrected command
    assert f"stopped (the same command continues them): source_only ({long.out})" in message
    assert message.endswith(f"not started: oracle ({after.out})")
    assert not after.out.exists()
    # The long run was stopped, not waited for: it saved a checkpoint and has no results.
    assert (quick.out / "results.json").is_file()
    assert not (long.out / "results.json").exists()
    assert list((long.out / "checkpoints").glob("step_*.pt"))


def _workers_of(pid: int) -> list[int]:
    """The spawned worker processes below ``pid`` (not multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"spawn_main" in command:
                found.append(int(child))
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker processes in /proc")
def test_ctrl_c_in_an_ablation_worker_exits_130_with_a_plain_line(tmp_path):
    out = tmp_path / "ablate"
    argv = ["ablate", "--out", str(out), "--seeds", "1", "--jobs", "2", "--threads", "1"]
    argv += ["--rows", "source_only", "oracle", *TINY, "train.pretrain_steps=3000", "run.log_every=1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "posealign", *argv],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        logs = [out / "seed0" / row / "metrics.jsonl" for row in ("source_only", "oracle")]
        deadline = time.monotonic() + 180
        while not all(log.is_file() and log.read_text().strip() for log in logs):  # both in their training loops
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "timed out waiting for the training to start"
            time.sleep(0.05)
        workers = _workers_of(process.pid)
        assert len(workers) == 2
        # Ctrl-C reaching one worker only (a terminal sends it to all; this is the harder case).
        os.kill(workers[0], signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGINT, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("posealign ablate: stopped by signal") and "internal error" not in stderr, stderr
    assert lines[-1].endswith("run the same ablate command to continue")
    for row in ("source_only", "oracle"):  # both stopped with a checkpoint, neither finished
        assert not (out / "seed0" / row / "results.json").exists()

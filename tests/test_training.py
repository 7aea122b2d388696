"""``posealign train`` end to end on a tiny benchmark: the run directory, resuming after SIGKILL and
SIGTERM, two ranks under torchrun, and one-line errors for bad input.

Every run is the daml preset at 32 px for a handful of steps; one benchmark (64 + 16 images per
domain) is generated once per test run and shared.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from posealign.benchmark.task import ensure_benchmark
from posealign.cli import main
from posealign.config import load_config
from posealign.engine.run_directory import MetricsLog, RunLock, refuse_if_locked
from posealign.errors import UserError
from posealign.keypoints import ANIMAL18

TINY = [
    "run.tensorboard=false",
    "run.progress=false",
    "run.num_workers=0",
    "run.log_every=1",
    "run.seed=3",
    "data.image_size=32",
    "data.heatmap_size=32",
    "data.benchmark_sizes={source_train: 64, source_test: 16, target_train: 64, target_test: 16, target_val: 16}",
    "train.batch_size=8",
]
# The resumable run of tests 1-3: 4 pretrain + 6 adapt steps, checkpoints after steps 3, 6 and 9.
SCHEDULE = ["train.pretrain_steps=4", "train.adapt_steps=6", "run.checkpoint_every=3"]
# Subprocesses get one thread each, as the in-process runs do: the same arithmetic, bit for bit.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def benchmark_root(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("benchmark")
    ensure_benchmark(load_config("daml", "benchmark", [*TINY, f"data.benchmark_root={root}"]))
    return root


def train_argv(out: Path, benchmark_root: Path, *overrides: str, preset: str = "daml") -> list[str]:
    return [
        "train",
        "--preset",
        preset,
        "--task",
        "benchmark",
        "--out",
        str(out),
        *TINY,
        f"data.benchmark_root={benchmark_root}",
        *overrides,
    ]


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def start_subprocess(argv: list[str], cwd: Path, new_session: bool = False) -> subprocess.Popen:
    """``posealign ARGV`` in a subprocess; ``new_session``: in its own process group, as a batch job's."""
    return subprocess.Popen(
        [sys.executable, "-m", "posealign", *argv],
        cwd=cwd,
        env=SUBPROCESS_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=new_session,
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``condition`` until it holds; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before the awaited point:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("timed out waiting for the run")
        time.sleep(0.005)


def final_numbers(run_dir: Path) -> dict:
    """results.json without its timing."""
    results = json.loads((run_dir / "results.json").read_text())
    results.pop("train_seconds")
    return results


def assert_same_networks(run_a: Path, run_b: Path) -> None:
    a = torch.load(run_a / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    b = torch.load(run_b / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    assert a["step"] == b["step"]
    for network in ("student", "teacher", "discriminator"):
        assert a[network].keys() == b[network].keys()
        for name, tensor in a[network].items():
            assert torch.allclose(tensor.float(), b[network][name].float(), atol=1e-5), f"{network}.{name}"


@pytest.fixture(scope="module")
def reference_run(benchmark_root, tmp_path_factory) -> tuple[Path, str]:
    """The uninterrupted run every resumed run must reproduce, and its console output."""
    out = tmp_path_factory.mktemp("reference") / "run"
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        assert main(train_argv(out, benchmark_root, *SCHEDULE)) == 0
    return out, console.getvalue()


# ---------------------------------------------------------------- 1. the run directory


def test_run_writes_config_metrics_checkpoint_and_results(reference_run):
    run_dir, console = reference_run
    # Effective batch and lr, up front (the benchmark task restarts stage 2 at 2e-4).
    assert "batch 8 x 1 rank(s) = 8 per domain, lr 0.001 (stage 2 from 0.0002)" in console

    config_text = (run_dir / "config.yaml").read_text()
    assert "${" not in config_text and "seed: 3" in config_text

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 11))
    assert {"loss", "loss_sup", "lr"} <= set(train[0]) and train[0]["stage"] == "pretrain"
    assert {"loss_cons", "loss_adv", "loss_im"} <= set(train[-1]) and train[-1]["stage"] == "adapt"
    assert {"eval_target", "eval_source"} <= {r["kind"] for r in records}

    final = torch.load(run_dir / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    assert final["step"] == 10 and final["teacher"] is not None

    results = json.loads((run_dir / "results.json").read_text())
    assert results["method"] == "daml" and results["steps"] == 10
    for domain in ("target", "source"):
        assert 0.0 <= results[domain]["pck"] <= 100.0
        assert {"Sld", "Elb", "Wrist", "Hip", "Knee", "Ankle"} <= set(results[domain]["groups"])
    # The evaluated network's domain gap on the two test splits' crop means (no label read).
    gap = results["domain_gap"]
    assert (
        gap["layer"] == "deconv"
        and min(gap["source_crops"], gap["target_crops"]) >= 4
        and 0.0 <= gap["probe_accuracy"] <= 1.0
    )
    assert gap["proxy_a_distance"] == pytest.approx(2 * (2 * gap["probe_accuracy"] - 1))
    assert "eval_domain_gap" in {r["kind"] for r in records}


# ---------------------------------------------------------------- 2, 3. resuming


def test_sigkill_then_resume_reproduces_the_uninterrupted_run(reference_run, benchmark_root, tmp_path, capsys):
    out = tmp_path / "run"
    process = start_subprocess(train_argv(out, benchmark_root, *SCHEDULE), tmp_path)
    wait_for(lambda: any((out / "checkpoints").glob("step_*.pt")), process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists(), "the run ended before it was killed"

    code, stdout, _ = run_cli(capsys, [*train_argv(out, benchmark_root, *SCHEDULE), "--resume", "auto"])
    assert code == 0 and "resumed from" in stdout
    assert final_numbers(out) == final_numbers(reference_run[0])
    assert_same_networks(out, reference_run[0])


def test_sigterm_saves_then_resume_completes(reference_run, benchmark_root, tmp_path, capsys):
    out = tmp_path / "run"
    process = start_subprocess(train_argv(out, benchmark_root, *SCHEDULE), tmp_path)
    metrics = out / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 1, process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode not in (0, -signal.SIGTERM), output
    assert "--resume auto" in output
    checkpoints = sorted((out / "checkpoints").glob("step_*.pt"))
    stopped_at = torch.load(checkpoints[-1], map_location="cpu", weights_only=False)["step"]
    assert 1 <= stopped_at < 10

    # Workers may change on resume; their loader must not shift the run's random stream.
    code, stdout, _ = run_cli(
        capsys, [*train_argv(out, benchmark_root, *SCHEDULE, "run.num_workers=1"), "--resume", "auto"]
    )
    assert code == 0 and f"at step {stopped_at}" in stdout
    assert final_numbers(out) == final_numbers(reference_run[0])
    assert_same_networks(out, reference_run[0])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_whole_job_with_loader_workers_saves_then_resume_completes(
    signum, reference_run, benchmark_root, tmp_path, capsys
):
    # SLURM, timeout and Ctrl-C signal every process of the job, the loader workers included.
    out = tmp_path / "run"
    argv = train_argv(out, benchmark_root, *SCHEDULE, "run.num_workers=2", "data.preload=false")
    process = start_subprocess(argv, tmp_path, new_session=True)
    metrics = out / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 2, process)
    os.killpg(process.pid, signum)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, output
    assert "continue with --resume auto" in output and "internal error" not in output, output
    stopped_at = torch.load(max((out / "checkpoints").glob("step_*.pt")), weights_only=True)["step"]
    assert 2 <= stopped_at < 10

    code, stdout, _ = run_cli(capsys, [*argv, "--resume", "auto"])
    assert code == 0 and f"at step {stopped_at}" in stdout
    assert final_numbers(out) == final_numbers(reference_run[0])
    assert_same_networks(out, reference_run[0])


def test_a_second_process_on_a_folder_in_training_is_refused_and_the_first_goes_on(
    reference_run, benchmark_root, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = train_argv(out, benchmark_root, *SCHEDULE)
    process = start_subprocess(argv, tmp_path)
    metrics = out / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 1, process)
    process.send_signal(signal.SIGSTOP)  # the first run holds the folder, paused, while the others try
    try:
        for again in (["--resume", "auto"], []):
            code, _, err = run_cli(capsys, [*argv, *again])
            assert_one_line_error(code, err, str(out), f"PID {process.pid}", "--resume auto")
    finally:
        process.send_signal(signal.SIGCONT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    assert final_numbers(out) == final_numbers(reference_run[0])
    assert_same_networks(out, reference_run[0])
    assert not (out / "train.lock").exists()


def test_the_run_lock_names_its_holder_and_is_released(tmp_path):
    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        assert (run_dir / "train.lock").read_text().split()[0] == str(os.getpid())
        refuse_if_locked(run_dir)  # this process's own lock
        with pytest.raises(UserError, match=f"PID {os.getpid()} on "), RunLock(run_dir):
            pass
    assert not (run_dir / "train.lock").exists()
    with RunLock(run_dir):
        pass
    # Locked by a process that has not written its PID (yet): refused after a moment, saying so.
    with open(run_dir / "train.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="PID not written"), RunLock(run_dir):
            pass


def test_resume_after_the_last_step_only_evaluates(reference_run, benchmark_root, tmp_path, capsys):
    # Stopped during the final evaluation: final.pt is written, results.json is not.
    out = tmp_path / "run"
    shutil.copytree(reference_run[0], out)
    (out / "results.json").unlink()
    argv = [*train_argv(out, benchmark_root, *SCHEDULE), "--resume", "auto"]
    code, stdout, _ = run_cli(capsys, argv)
    assert code == 0 and f"resumed from {out / 'checkpoints' / 'final.pt'} at step 10" in stdout
    assert final_numbers(out) == final_numbers(reference_run[0])


def test_resume_drops_a_metrics_line_cut_short_by_a_kill(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 1, "kind": "train"}\n{"step": 2, "kind": "train"}\n{"step": 3, "ki'
    )
    log = MetricsLog(tmp_path, tensorboard=False)
    log.truncate_after(1)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "kind": "train"}\n'


# ---------------------------------------------------------------- 4. two ranks

# Runs `posealign train` on this rank, then saves the rank's final networks: what the package writes
# is rank 0's alone, so the test records every rank's own copy from outside.
RANK_SCRIPT = """
import os, sys
import torch
from posealign import cli
from posealign.engine import trainer

methods = []

class RecordedAlignment(trainer.MultiLevelAlignment):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        methods.append(self)

trainer.MultiLevelAlignment = RecordedAlignment
code = cli.main(sys.argv[2:])
student = methods[0].student
student = getattr(student, "module", student)  # DistributedDataParallel
torch.save(
    {"student": student.state_dict(), "teacher": methods[0].teacher.state_dict()},
    os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"),
)
sys.exit(code)
"""


def test_two_ranks_keep_identical_networks_and_resume_on_one(benchmark_root, tmp_path, capsys):
    script = tmp_path / "rank_states.py"
    script.write_text(RANK_SCRIPT)
    out, dumps = tmp_path / "run", tmp_path / "dumps"
    dumps.mkdir()
    # bn_mode=copy: the teacher takes each rank's own student BatchNorm statistics, which only an
    # average across ranks keeps equal.
    schedule = [
        "train.pretrain_steps=2",
        "train.adapt_steps=3",
        "run.checkpoint_every=3",
        "run.device=cpu",
        "mean_teacher.bn_mode=copy",
    ]

    def on_two_ranks(*argv: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *argv]
        result = subprocess.run(command, cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    result = on_two_ranks(str(script), str(dumps), *train_argv(out, benchmark_root, *schedule))
    assert "batch 8 x 2 rank(s) = 16 per domain" in result.stdout

    rank0, rank1 = (torch.load(dumps / f"rank{r}.pt", map_location="cpu") for r in (0, 1))
    checkpoint = torch.load(out / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    # Student parameters (its BatchNorm statistics are rank 0's, broadcast at each forward) and the
    # whole teacher, buffers included, are the same on both ranks and in rank 0's checkpoint.
    student_parameters = [name for name in rank0["student"] if "running_" not in name and "num_batches" not in name]
    for name in student_parameters:
        assert torch.equal(rank0["student"][name], rank1["student"][name]), name
    for name in rank0["teacher"]:
        assert torch.equal(rank0["teacher"][name], rank1["teacher"][name]), name
    for network in ("student", "teacher"):
        for name, tensor in rank0[network].items():
            assert torch.equal(tensor, checkpoint[network][name]), f"{network}.{name}"

    # Rank 0's checkpoint after step 3 continues in a single process, and says what is not exact.
    resume_from = out / "checkpoints" / "step_0000003.pt"
    code, stdout, _ = run_cli(capsys, [*train_argv(out, benchmark_root, *schedule), "--resume", str(resume_from)])
    assert code == 0 and "resumed from" in stdout and "batch 8 x 1 rank(s)" in stdout
    assert "written by 2 rank(s), continued on 1" in stdout
    assert json.loads((out / "results.json").read_text())["steps"] == 5

    # And a one-process checkpoint continues on two ranks (it once failed at rng[rank]).
    wider = [*schedule[:1], "train.adapt_steps=4", *schedule[2:]]
    wider_argv = train_argv(tmp_path / "wider", benchmark_root, *wider)
    result = on_two_ranks("-m", "posealign", *wider_argv, "--resume", str(out / "checkpoints" / "final.pt"))
    assert "written by 1 rank(s), continued on 2" in result.stdout
    assert json.loads((tmp_path / "wider" / "results.json").read_text())["steps"] == 6


# The supervised loss of rank 1 alone turns NaN at step 1 (its second call): the data of one rank
# can do that while the other ranks' losses are fine.
NAN_ON_ONE_RANK_SCRIPT = """
import os, sys
import torch
from posealign import cli, multilevel_alignment

calls = []
real_loss = multilevel_alignment.joints_mse_loss

def loss_nan_on_rank_1_at_step_1(*args, **kwargs):
    calls.append(1)
    loss = real_loss(*args, **kwargs)
    return loss * float("nan") if os.environ["RANK"] == "1" and len(calls) == 2 else loss

multilevel_alignment.joints_mse_loss = loss_nan_on_rank_1_at_step_1
sys.exit(cli.main(sys.argv[1:]))
"""


def test_nan_on_one_rank_stops_every_rank_after_saving(benchmark_root, tmp_path):
    script = tmp_path / "nan_on_one_rank.py"
    script.write_text(NAN_ON_ONE_RANK_SCRIPT)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    schedule = ["train.pretrain_steps=3", "train.adapt_steps=0", "run.device=cpu"]
    # Before the ranks agreed on the check, rank 0 waited for rank 1's gradients until the timeout.
    result = subprocess.run(
        [*command, str(script), *train_argv(out, benchmark_root, *schedule, preset="source_only")],
        cwd=tmp_path,
        env=SUBPROCESS_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    saved = out / "checkpoints" / "step_0000001.pt"
    assert f"{saved}: training diverged (loss_sup is nan at step 1)" in output
    assert f"{saved}: training diverged (a loss is not finite on another rank at step 1)" in output
    state = torch.load(saved, map_location="cpu", weights_only=False)
    assert state["step"] == 1
    assert all(torch.isfinite(t).all() for t in state["student"].values() if t.is_floating_point())
    assert not (out / "results.json").exists()


# ---------------------------------------------------------------- 5. bad input


def assert_one_line_error(code: int, err: str, *mentions: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("posealign train: error: "), err
    for mention in mentions:
        assert mention in lines[0], (mention, lines[0])


@pytest.fixture()
def benchmark_copy(benchmark_root, tmp_path) -> Path:
    copy = tmp_path / "benchmark"
    shutil.copytree(benchmark_root, copy)
    return copy


def test_output_directory_of_another_run_is_left_alone(reference_run, benchmark_root, capsys):
    run_dir = reference_run[0]
    before = {p: p.read_bytes() for p in [run_dir / "config.yaml", run_dir / "results.json", run_dir / "metrics.jsonl"]}
    code, _, err = run_cli(capsys, train_argv(run_dir, benchmark_root, *SCHEDULE, "optim.lr=0.002"))
    assert_one_line_error(code, err, str(run_dir), "optim.lr", "choose another --out")
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.parametrize("loading", ["preload", "workers"])
def test_corrupt_image(loading, benchmark_copy, tmp_path, capsys):
    broken = benchmark_copy / "images" / "source_train" / "000005.png"
    broken.write_bytes(b"\x89PNG not really")
    overrides = ["train.pretrain_steps=8"]  # one epoch of the 64 source images: the broken one is read
    if loading == "workers":
        overrides += ["data.preload=false", "run.num_workers=1"]  # the error comes from a worker process
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, train_argv(out, benchmark_copy, *overrides, preset="source_only"))
    assert_one_line_error(code, err, str(broken), "remove it from the annotations")
    assert broken.read_bytes() == b"\x89PNG not really"  # the benchmark was not regenerated over it
    if loading == "preload":  # bad data found before the run directory is made
        assert not out.exists()


def test_an_image_broken_in_stage_two_keeps_the_run_and_resume_finishes_without_it(
    benchmark_copy, tmp_path, capsys, monkeypatch
):
    from posealign.engine import trainer

    broken = []
    start_adaptation = trainer.start_adaptation

    def break_an_image_then_start(training, *args):
        stream = training.target_stream  # the target image of stage 2's second step
        index = stream._epoch_batches(stream.epoch)[stream.consumed + 1][0]
        broken.append(Path(stream.dataset.dataset.records[index].image))
        broken[0].write_bytes(b"\x89PNG broken after stage 1")
        start_adaptation(training, *args)

    monkeypatch.setattr(trainer, "start_adaptation", break_an_image_then_start)
    out = tmp_path / "run"
    # run.checkpoint_every at the task's 200: no periodic checkpoint before the error.
    argv = train_argv(out, benchmark_copy, "train.pretrain_steps=4", "train.adapt_steps=6", "data.preload=false")
    code, _, err = run_cli(capsys, argv)
    saved = out / "checkpoints" / "step_0000005.pt"
    assert_one_line_error(code, err, str(broken[0]), str(saved), "continue with --resume auto")
    assert (out / "checkpoints" / "step_0000004.pt").is_file()  # the end of stage 1
    assert torch.load(saved, weights_only=True)["step"] == 5
    monkeypatch.undo()

    annotations = benchmark_copy / "annotations" / "target_train.json"
    coco = json.loads(annotations.read_text())
    gone = {image["id"] for image in coco["images"] if (benchmark_copy / image["file_name"]) == broken[0]}
    assert len(gone) == 1
    coco["images"] = [image for image in coco["images"] if image["id"] not in gone]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] not in gone]
    annotations.write_text(json.dumps(coco))
    code, stdout, _ = run_cli(capsys, [*argv, "--resume", "auto"])
    assert code == 0 and "at step 5" in stdout
    assert json.loads((out / "results.json").read_text())["steps"] == 10


def test_an_unexpected_error_after_a_trained_step_keeps_the_folder(benchmark_root, tmp_path, capsys, monkeypatch):
    from posealign.engine import trainer

    optimization_step = trainer.optimization_step

    def fails_at_step_2(training, stage, step, *batches):
        if step == 2:
            raise RuntimeError("a fault injected at step 2")
        return optimization_step(training, stage, step, *batches)

    monkeypatch.setattr(trainer, "optimization_step", fails_at_step_2)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, train_argv(out, benchmark_root, "train.pretrain_steps=4", preset="source_only"))
    assert code == 1 and f"traceback in {out / 'error.log'}" in err
    assert (out / "error.log").is_file() and (out / "metrics.jsonl").read_text().count("\n") == 2


def test_annotation_with_wrong_number_of_keypoints(benchmark_copy, tmp_path, capsys):
    annotations = benchmark_copy / "annotations" / "source_train.json"
    coco = json.loads(annotations.read_text())
    coco["annotations"][3]["keypoints"] = coco["annotations"][3]["keypoints"][:-3]
    annotations.write_text(json.dumps(coco))
    code, _, err = run_cli(capsys, train_argv(tmp_path / "run", benchmark_copy, *SCHEDULE))
    assert_one_line_error(code, err, str(annotations), "15 keypoints", "fix the file")


def test_missing_annotation_file(benchmark_copy, tmp_path, capsys):
    annotations = benchmark_copy / "annotations" / "target_test.json"
    annotations.unlink()
    code, _, err = run_cli(capsys, train_argv(tmp_path / "run", benchmark_copy, *SCHEDULE))
    assert_one_line_error(code, err, str(annotations), "not found")
    assert not annotations.exists()


@pytest.mark.parametrize("mismatch", ["keypoint_set", "network"])
def test_checkpoint_of_another_run(mismatch, reference_run, benchmark_root, tmp_path, capsys):
    state = torch.load(reference_run[0] / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    if mismatch == "keypoint_set":
        state["keypoint_set"] = {"name": ANIMAL18.name, "names": list(ANIMAL18.names), "skeleton": []}
        mentions = (repr(ANIMAL18.name), "use a matching checkpoint")
    else:
        state["student"].pop("backbone.0.weight")
        mentions = ("backbone.0.weight", "checkpoint of the same config")
    other = tmp_path / "other.pt"
    torch.save(state, other)
    before = other.read_bytes()
    argv = [*train_argv(tmp_path / "run", benchmark_root, *SCHEDULE), "--resume", str(other)]
    code, _, err = run_cli(capsys, argv)
    assert_one_line_error(code, err, str(other), *mentions)
    assert other.read_bytes() == before


def test_nan_loss_stops_naming_the_term_and_step_after_saving(benchmark_root, tmp_path, capsys):
    out = tmp_path / "run"
    # Adam moves every weight by ~lr in the first step: at 1e30 the next forward overflows.
    code, _, err = run_cli(capsys, train_argv(out, benchmark_root, *SCHEDULE, "optim.lr=1e30"))
    saved = out / "checkpoints" / "step_0000001.pt"
    assert_one_line_error(code, err, str(saved), "loss_sup is nan at step 1", "lower optim.lr")
    state = torch.load(saved, map_location="cpu", weights_only=False)
    assert state["step"] == 1
    assert all(torch.isfinite(tensor).all() for tensor in state["student"].values() if tensor.is_floating_point())
    assert not (out / "results.json").exists()


def test_compiled_student_trains_both_stages_and_saves_plain_keys(benchmark_root, tmp_path, capsys):
    # aot_eager traces with dynamo and AOTAutograd as inductor does, without compiling C++ kernels.
    out = tmp_path / "compiled"
    schedule = ["train.pretrain_steps=2", "train.adapt_steps=2", "run.compile=true", "run.compile_backend=aot_eager"]
    code, stdout, _ = run_cli(capsys, train_argv(out, benchmark_root, *schedule))
    assert code == 0, stdout
    state = torch.load(out / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    assert not any(key.startswith("_orig_mod.") for key in state["student"])
    assert state["student"].keys() == state["teacher"].keys()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["stage"] for row in rows if row["kind"] == "train"] == ["pretrain", "pretrain", "adapt", "adapt"]


# ---------------------------------------------------------------- diagnostics and the calibrated pose level


def test_diagnostics_are_logged_and_leave_the_run_unchanged(reference_run, benchmark_root, tmp_path, capsys):
    # The reference logs every step, so every adaptation step also ran the diagnostics' extra backwards.
    adapt = [json.loads(line) for line in (reference_run[0] / "metrics.jsonl").read_text().splitlines()]
    adapt = [m for m in adapt if m.get("stage") == "adapt"]
    assert adapt and all(
        {"grad_loss_sup", "grad_loss_cons", "grad_loss_adv", "grad_loss_im", "im_entropy_h", "im_entropy_m"} <= set(m)
        and {"discriminator_accuracy_source", "discriminator_accuracy_target"} <= set(m)
        for m in adapt
    )
    assert all(m["grad_loss_sup"] > 0 and 0 < m["im_entropy_h"] <= 1 for m in adapt)
    out = tmp_path / "quiet"
    code, _, _ = run_cli(capsys, train_argv(out, benchmark_root, *SCHEDULE, "run.log_every=1000"))
    assert code == 0
    assert_same_networks(out, reference_run[0])


def test_calibrated_temperature_is_saved_resumed_and_not_taken_from_a_shared_stage_one(
    benchmark_root, tmp_path, capsys
):
    cache = tmp_path / "cache"
    # daml_plus builds a 16-channel discriminator; the cached stage 1 is reused by one of 8 channels.
    whole = tmp_path / "whole"
    code, stdout, _ = run_cli(
        capsys, train_argv(whole, benchmark_root, *SCHEDULE, f"run.pretrain_cache={cache}", preset="daml_plus")
    )
    assert code == 0
    results = json.loads((whole / "results.json").read_text())
    tau = results["pose_temperature"]
    assert 0 < tau < 1 and f"temperature {tau:.4g} calibrated" in (whole / "train.log").read_text()
    state = torch.load(whole / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    assert state["pose_temperature"] == tau

    # Resumed inside stage 2 (checkpoint after step 6 of 4 + 6): the saved tau, not a recalibration
    # on the partly adapted student.
    resumed = tmp_path / "resumed"
    argv = [*train_argv(resumed, benchmark_root, *SCHEDULE, f"run.pretrain_cache={cache}", preset="daml_plus")]
    code, stdout, _ = run_cli(capsys, [*argv, "--resume", str(whole / "checkpoints" / "step_0000006.pt")])
    assert code == 0 and "resumed from" in stdout
    assert final_numbers(resumed) == final_numbers(whole)

    narrow = tmp_path / "narrow"
    overrides = (f"run.pretrain_cache={cache}", "align.feature.channels=[8,8,8]")
    code, stdout, _ = run_cli(capsys, train_argv(narrow, benchmark_root, *SCHEDULE, *overrides, preset="daml_plus"))
    assert code == 0 and "reusing stage 1" in stdout
    assert json.loads((narrow / "results.json").read_text())["pose_temperature"] == pytest.approx(tau)


def test_adapt_lr_restarts_stage_two_shares_stage_one_and_resumes(benchmark_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    schedule = (*SCHEDULE, f"run.pretrain_cache={cache}", "optim.milestones=[2,7]")
    code, stdout, _ = run_cli(capsys, train_argv(tmp_path / "plain", benchmark_root, *schedule, "optim.adapt_lr=null"))
    assert code == 0 and "reusing" not in stdout

    # Stage 2 starts at adapt_lr whatever stage 1 decayed to; a later milestone still multiplies it.
    restarted = tmp_path / "restarted"
    overrides = (*schedule, "optim.adapt_lr=5.0e-4")
    code, stdout, _ = run_cli(capsys, train_argv(restarted, benchmark_root, *overrides))
    assert code == 0 and "reusing stage 1" in stdout  # stage 1 is the same, so is its cache entry
    # Each line's lr is the one the next step runs at (logged after the scheduler's step); the
    # restarted run logs stage 2 only, its stage 1 came from the cache.
    assert logged_lrs(tmp_path / "plain") == pytest.approx([1e-3, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4] + [1e-5] * 4)
    assert logged_lrs(restarted) == pytest.approx([5e-4, 5e-4] + [5e-5] * 4)
    assert "stage 2 starts at lr 0.0005" in (restarted / "train.log").read_text()

    # Resumed inside stage 2, the optimiser's saved lr goes on: no second restart.
    resumed = tmp_path / "resumed"
    checkpoint = restarted / "checkpoints" / "step_0000006.pt"
    code, _, _ = run_cli(capsys, [*train_argv(resumed, benchmark_root, *overrides), "--resume", str(checkpoint)])
    assert code == 0 and final_numbers(resumed) == final_numbers(restarted)
    assert final_numbers(restarted) != final_numbers(tmp_path / "plain")


def logged_lrs(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["lr"] for r in records if r["kind"] == "train"]


def test_a_saved_config_without_a_newer_key_reads_it_at_its_default(tmp_path):
    from omegaconf import OmegaConf

    from posealign.config import resolved
    from posealign.engine.run_directory import check_run_directory
    from posealign.errors import UserError
    from posealign.experiments import run_preset

    config = load_config("daml_plus", "benchmark", [f"run.out={tmp_path}"])
    saved = OmegaConf.to_container(resolved(config))
    # As saved by a version without the option; its default (no cap) is what it ran. (Keys whose
    # default changed behaviour are refused instead: tests/test_saved_configs.py.)
    del saved["align"]["feature"]["reversal_cap"]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    check_run_directory(config, resume=True)
    (tmp_path / "results.json").write_text('{"reused": true}')  # and `ablate` reuses its results
    assert run_preset("daml_plus", "benchmark", tmp_path) == {"reused": True}

    for override in ("align.feature.reversal_cap=0.5", "align.feature.lr=1e-3"):
        other = load_config("daml_plus", "benchmark", [f"run.out={tmp_path}", override])
        with pytest.raises(UserError, match=f"holds a different run.*{override.split('=')[0].split('.')[-1]}"):
            check_run_directory(other, resume=True)

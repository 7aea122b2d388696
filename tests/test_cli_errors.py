"""A newcomer's first hour: the README's own-data block runs as written, and every bad
input ends in one line with exit 2, no traceback, and no run folder left behind."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from posealign.cli import main

REPO = Path(__file__).resolve().parents[1]
# Appended to the README's command: the same run, small enough for a test.
TINY = [
    "model.pretrained=none",
    "model.backbone=resnet18",
    "model.backbone_stages=2",
    "model.deconv_channels=16",
    "data.image_size=32",
    "data.heatmap_size=32",
    "train.batch_size=4",
    "train.pretrain_steps=2",
    "train.adapt_steps=2",
    "optim.milestones=[100]",
    "run.amp=off",
    "run.num_workers=0",
    "run.progress=false",
    "run.tensorboard=false",
    "run.log_every=1",
]
NAMES = ["head", "neck", "left_hand", "right_hand", "left_foot", "right_foot"]


def write_coco(root: Path, split: str, count: int = 8, names: list[str] = NAMES, size: bool = True) -> Path:
    """``root/annotations/<split>.json`` with ``count`` 32 px noise images, one figure each."""
    rng = np.random.default_rng(len(split) + count)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        name = f"images/{split}_{index}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / name)
        images.append({"id": index, "file_name": name, **({"width": 32, "height": 32} if size else {})})
        points = rng.uniform(4, 28, (len(names), 2))
        annotations.append(
            {
                "id": index,
                "image_id": index,
                "category_id": 1,
                "keypoints": [v for x, y in points for v in (float(x), float(y), 2)],
                "bbox": [2.0, 2.0, 28.0, 28.0],
            }
        )
    category = {"id": 1, "name": "figure", "keypoints": names, "skeleton": [[1, 2], [2, 3], [2, 4]]}
    path = root / "annotations" / f"{split}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [category]}))
    return path


def readme_block(section: str) -> list[list[str]]:
    """The commands of the first bash block of a README section, each as argv words (continuation
    lines joined, comments dropped)."""
    text = (REPO / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", body, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [words for words in (shlex.split(line, comments=True) for line in lines) if words]


def run_cli(capsys, *argv: str) -> tuple[int, str, list[str]]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def assert_one_line(code: int, err: list[str], *words: str) -> None:
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    for word in words:
        assert word in err[0], (word, err[0])


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> Path:
    """A folder with data/synth and data/real as the README describes, and the README's run in it."""
    import torch

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("own_data")
    write_coco(base / "data" / "synth", "train")
    write_coco(base / "data" / "real", "train")
    write_coco(base / "data" / "real", "val", count=4)
    photos = base / "photos"
    photos.mkdir()
    for image in sorted((base / "data" / "real").rglob("*.png"))[:2]:
        (photos / image.name).write_bytes(image.read_bytes())
    commands = readme_block("Your own data")
    assert [argv[:2] for argv in commands][:3] == [
        ["posealign", "data"],
        ["posealign", "train"],
        ["posealign", "train"],
    ]
    previous = Path.cwd()
    os.chdir(base)
    try:
        for argv in commands:
            assert argv[0] == "posealign"
            # Every command as written; training with tiny sizes and steps.
            assert main([*argv[1:], *(TINY if argv[1] == "train" else [])]) == 0, argv
    finally:
        os.chdir(previous)
    return base


# ---------------------------------------------------------------- the README, as written


def test_readme_own_data_block_runs_as_written(own_data):
    run = own_data / "runs" / "mine"
    results = json.loads((run / "results.json").read_text())
    assert results["task"] == "coco" and set(results) >= {"target"}
    assert not (own_data / "runs" / "benchmark").exists()  # no benchmark built
    assert "step 4 [train]" in (run / "train.log").read_text()


def test_resume_auto_on_a_finished_run_says_so(own_data, capsys, monkeypatch):
    monkeypatch.chdir(own_data)
    metrics = (own_data / "runs" / "mine" / "metrics.jsonl").read_text()
    code, _, err = run_cli(capsys, *readme_block("Your own data")[1][1:], *TINY, "--resume", "auto")
    assert code == 0 and "is finished" in err[0]
    assert (own_data / "runs" / "mine" / "metrics.jsonl").read_text() == metrics


def test_export_respects_umask_and_refuses_unwritable_places(own_data, capsys, tmp_path):
    final = own_data / "runs" / "mine" / "checkpoints" / "final.pt"
    previous = os.umask(0o022)
    try:
        assert main(["export", str(final), "--out", str(tmp_path / "m.safetensors")]) == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644
    header = json.loads((tmp_path / "m.json").read_text())
    assert header["keypoint_set"]["skeleton"] == [[1, 2], [2, 3], [2, 4]]  # COCO's 1-based skeleton
    capsys.readouterr()
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "export", str(final), "--out", str(tmp_path / "file" / "m.safetensors"))
    assert_one_line(code, err, "cannot write")


def test_eval_device_and_keypoint_mismatch(own_data, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(own_data)  # the README's roots are relative
    run = str(own_data / "runs" / "mine")
    code, out, _ = run_cli(capsys, "eval", run, "--device", "cpu", "--json")
    assert code == 0 and "target" in json.loads(out)
    write_coco(tmp_path / "four", "val", count=4, names=NAMES[:4])
    code, _, err = run_cli(capsys, "eval", run, f"data.eval.target.root={tmp_path / 'four'}", "--device", "cpu")
    assert_one_line(code, err)
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "missing"))
    assert_one_line(code, err, "not found")
    assert "--resume" not in err[0]


def test_resume_from_a_checkpoint_of_other_keypoints_leaves_no_folder(own_data, capsys, tmp_path):
    write_coco(tmp_path / "four", "train", names=NAMES[:4])
    final = own_data / "runs" / "mine" / "checkpoints" / "final.pt"
    out = tmp_path / "run"
    argv = ["train", "--preset", "source_only", "--task", "coco", "--out", str(out), *TINY]
    roots = [f"data.source_root={tmp_path / 'four'}", f"data.target_root={tmp_path / 'four'}", "data.eval.target=null"]
    code, _, err = run_cli(capsys, *argv, *roots, "--resume", str(final))
    assert_one_line(code, err, "keypoint")
    assert not out.exists()


def test_predict_prints_clean_paths_and_takes_kpt_thr(own_data, capsys, tmp_path):
    final = own_data / "runs" / "mine" / "checkpoints" / "final.pt"
    out = f"{tmp_path / 'preds'}/"
    code, printed, _ = run_cli(
        capsys, "predict", str(own_data / "data" / "real" / "images"), "--checkpoint", str(final), "--out", out,
        "--kpt-thr", "0.3",
    )  # fmt: skip
    assert code == 0 and "//" not in printed
    info = json.loads((tmp_path / "preds" / "predictions_info.json").read_text())
    assert info["keypoint_set"]["skeleton"][0] == [1, 2]


def test_report_names_rows_by_run_folder(own_data, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(own_data)
    for seed in ("seed0", "seed1"):
        shutil.copytree(own_data / "runs" / "mine", tmp_path / seed / "mine")
    assert (
        main(
            ["report", str(tmp_path / "seed0" / "mine"), str(tmp_path / "seed1" / "mine"), "--out", str(tmp_path / "r")]
        )
        == 0
    )
    page = (tmp_path / "r" / "report.md").read_text()
    assert "| seed0/mine |" in page and "| seed1/mine |" in page


# ---------------------------------------------------------------- bad values: one line, nothing written


@pytest.mark.parametrize(
    "override, words",
    [
        ("train.batch_size=abc", ["train.batch_size", "integer"]),
        ("optim.lr=abc", ["optim.lr", "number"]),
        ("optim.adapt_lr=-1.0e-4", ["optim.adapt_lr", "positive"]),
        ("data.source.dataset=cocoo", ["cocoo", "coco"]),
        ("train.pretrain_steps=-5", ["train.pretrain_steps"]),
        ("data.keypoint_set=body17", ["body17", "body16"]),
        ("run.amp=fp8", ["run.amp"]),
        ("run.device=tpu", ["run.device"]),
        ("data.source_root=/nonexistent/surreal", ["folder not found", "data.source_root="]),
    ],
)
def test_bad_values_are_one_line_before_anything_is_written(override, words, capsys, tmp_path):
    out = tmp_path / "run"
    roots = [f"data.source_root={tmp_path}", f"data.target_root={tmp_path}"]
    argv = ["train", "--task", "coco", "--out", str(out), *TINY, *roots, override]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line(code, err, *words)
    assert not out.exists()


def test_cuda_without_a_gpu(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), "run.device=cuda", "data.source.root=x")
    assert_one_line(code, err, "run.device=cuda", "CUDA")
    assert not (tmp_path / "r").exists()


def test_own_data_task_names_the_roots_to_pass(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--task", "coco", "--out", str(tmp_path / "r"))
    assert_one_line(code, err, "data.source_root=")


def test_paper_task_offline_says_how_to_pass_weights(capsys, tmp_path, monkeypatch):
    import posealign.config_checks as checks

    def offline(url, destination):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(checks, "download_weights", offline)
    roots = [f"data.source_root={tmp_path}", f"data.target_root={tmp_path}"]
    code, _, err = run_cli(capsys, "train", "--task", "surreal2lsp", "--out", str(tmp_path / "r"), *roots)
    assert_one_line(code, err, "model.pretrained=none", "model.pretrained=/path/to/")
    assert not (tmp_path / "r").exists()


def test_overrides_need_not_be_contiguous(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "train.batch_size=2", "--out", str(tmp_path / "r"), "optim.lr=abc")
    assert_one_line(code, err, "optim.lr")


def test_a_benchmark_of_other_parameters_is_not_regenerated(capsys, tmp_path):
    root = tmp_path / "benchmark"
    root.mkdir()
    (root / "benchmark.json").write_text(json.dumps({"seed": 0, "image_size": 64, "sizes": {"source_train": 9}}))
    argv = ["train", "--task", "benchmark", "--out", str(tmp_path / "r"), f"data.benchmark_root={root}"]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line(code, err, "other parameters", "data.benchmark_root=")
    assert (root / "benchmark.json").is_file() and not (tmp_path / "r").exists()


# ---------------------------------------------------------------- data files


def test_coco_files_with_gaps_are_one_line(capsys, tmp_path):
    path = write_coco(tmp_path, "val", count=2, size=False)
    code, _, err = run_cli(
        capsys, "data", "inspect", "--dataset", "coco", "--root", str(tmp_path), "--split", "val", "-o", "crop=image"
    )
    assert code == 0, err  # width and height read from the image files
    (tmp_path / "images" / "val_0.png").write_bytes(b"not a png")
    code, _, err = run_cli(
        capsys, "data", "inspect", "--dataset", "coco", "--root", str(tmp_path), "--split", "val", "-o", "crop=image"
    )
    assert_one_line(code, err, "width")
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "coco", "--root", str(tmp_path), "-o", "crop=foo")
    assert_one_line(code, err, "crop")
    coco = json.loads(path.read_text())
    del coco["categories"][0]["keypoints"]
    path.write_text(json.dumps(coco))
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "coco", "--root", str(tmp_path), "--split", "val")
    assert_one_line(code, err, "keypoints")


def test_inspect_reports_images_that_do_not_decode(capsys, tmp_path):
    write_coco(tmp_path, "train", count=2)
    (tmp_path / "images" / "train_1.png").write_bytes(b"\x89PNG broken")
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "coco", "--root", str(tmp_path), "--split", "train")
    summary = json.loads(err[-1])
    assert code == 0 and summary["images_unreadable"] == 1 and summary["first_unreadable"] == "images/train_1.png"


# ---------------------------------------------------------------- interruption, the last resort, the shell


def test_ctrl_c_exits_130_in_train_and_demo(capsys, tmp_path, monkeypatch):
    import posealign.benchmark.task
    import posealign.engine.trainer as trainer
    import posealign.experiments

    def stopped(*args, **kwargs):
        raise trainer.TrainingInterrupted(
            "stopped by signal 2 at step 3; checkpoint saved, continue with --resume auto", signum=2
        )

    monkeypatch.setattr(trainer, "train", stopped)
    monkeypatch.setattr(posealign.experiments, "run_preset", stopped)
    monkeypatch.setattr(posealign.benchmark.task, "ensure_benchmark", lambda config: None)
    code, _, err = run_cli(capsys, "train", "--task", "benchmark", "--out", str(tmp_path / "r"))
    assert code == 130 and len(err) == 1 and "--resume auto" in err[0]
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path / "demo"), "--resume", "auto", "--jobs", "1")
    assert code == 130 and len(err) == 1 and "same demo command" in err[0]


def test_unexpected_errors_keep_the_traceback_in_a_log(capsys, tmp_path, monkeypatch):
    import posealign.engine.trainer as trainer

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(trainer, "train", broken)
    monkeypatch.setattr("posealign.benchmark.task.ensure_benchmark", lambda config: None)
    code, _, err = run_cli(capsys, "train", "--task", "benchmark", "--out", str(tmp_path / "r"))
    assert code == 1 and len(err) == 1 and "ZeroDivisionError" in err[0]
    log = Path(re.search(r"traceback in (\S+?);", err[0]).group(1))
    assert "Traceback" in log.read_text()
    log.unlink()


def test_the_console_script_one_line_exit_2_and_a_light_help():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "posealign", "train", "optim.lr=abc"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    probe = "import sys; from posealign.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    light = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert light.stdout.strip() == "False", light.stderr
    version = subprocess.run([sys.executable, "-m", "posealign", "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0 and version.stdout.startswith("posealign ")
    helps = subprocess.run(
        [sys.executable, "-m", "posealign", "data", "--help"], capture_output=True, text=True, env=env
    )
    assert "``" not in helps.stdout

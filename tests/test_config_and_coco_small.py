"""``posealign config`` prints what a run saves, with train's one-line errors; the ``coco_small`` task
trains on a user's COCO files at the built-in benchmark's small model and schedule; ``posealign
eval`` prints a table (``--json``: the numbers in full)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_cli_errors import write_coco

from posealign.cli import main

ROOTS = ["data.source_root=data/synth", "data.target_root=data/real"]
# The task's model and sizes as they are, only a few steps and no extras, so it runs in seconds.
FEW_STEPS = [
    "train.pretrain_steps=2",
    "train.adapt_steps=2",
    "train.batch_size=4",
    "run.num_workers=0",
    "run.progress=false",
    "run.tensorboard=false",
    "run.log_every=1",
]


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> Path:
    """data/synth (labeled source), data/real (target, with a labeled val split), and daml trained
    on them by ``--task coco_small`` in runs/small."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("coco_small")
    write_coco(base / "data" / "synth", "train")
    write_coco(base / "data" / "real", "train")
    write_coco(base / "data" / "real", "val", count=4)
    previous = Path.cwd()
    os.chdir(base)
    try:
        argv = ["train", "--preset", "daml", "--task", "coco_small", *ROOTS, "--out", "runs/small", *FEW_STEPS]
        assert main(argv) == 0
    finally:
        os.chdir(previous)
    return base


def run_cli(capsys, *argv: str) -> tuple[int, str, list[str]]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def test_coco_small_trains_the_small_model_on_coco_files(own_data):
    run = own_data / "runs" / "small"
    results = json.loads((run / "results.json").read_text())
    assert results["task"] == "coco_small" and results["method"] == "daml" and "target" in results
    saved = yaml.safe_load((run / "config.yaml").read_text())
    model = saved["model"]
    assert (model["backbone"], model["backbone_stages"], model["deconv_channels"]) == ("resnet18", 2, 32)
    assert model["pretrained"] == "none"
    assert (saved["data"]["image_size"], saved["data"]["heatmap_size"]) == (64, 64)
    assert saved["optim"]["adapt_lr"] == 2.0e-4 and saved["align"]["image"]["encoder"] == "patch"
    assert saved["align"]["feature"]["channels"] == [16, 16, 16] and saved["mean_teacher"]["momentum"] == 0.98
    assert saved["run"]["amp"] == "off"  # not the paper tasks' bf16
    # The coco task's data: the user's roots, the keypoint set from the files, no benchmark.
    assert saved["data"]["keypoint_set"] == "from_file"
    assert saved["data"]["source"]["root"] == "data/synth" and saved["data"]["eval"]["target"]["split"] == "val"
    assert not [key for key in saved["data"] if key.startswith("benchmark")]
    assert not (own_data / "runs" / "benchmark").exists()


def test_config_prints_what_the_coco_small_run_saved(own_data, capsys, monkeypatch):
    monkeypatch.chdir(own_data)
    argv = ["config", "daml", "--task", "coco_small", *ROOTS, "--out", "runs/small", *FEW_STEPS]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    assert out == (own_data / "runs" / "small" / "config.yaml").read_text()
    # The default schedule of the task, shown without the test's overrides.
    code, out, _ = run_cli(capsys, "config", "daml", "--task", "coco_small", *ROOTS)
    train = yaml.safe_load(out)["train"]
    assert code == 0 and (train["pretrain_steps"], train["adapt_steps"], train["batch_size"]) == (400, 120, 16)


def test_config_resolves_the_paper_scale_own_data_command_without_downloading(own_data, capsys, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("config tried to download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.chdir(own_data)
    code, out, _ = run_cli(capsys, "config", "daml", "--task", "coco", *ROOTS, "--out", "runs/mine")
    config = yaml.safe_load(out)
    assert code == 0 and config["task"] == "coco" and config["run"]["out"] == "runs/mine"
    assert (config["model"]["backbone"], config["model"]["pretrained"]) == ("resnet101", "imagenet")
    assert (config["train"]["pretrain_steps"], config["train"]["adapt_steps"]) == (20000, 15000)
    # Data folders are train's to check: the config of a machine that has them can be shown here.
    code, out, _ = run_cli(
        capsys, "config", "daml", "--task", "coco", "data.source_root=/data/x", "data.target_root=/y"
    )
    assert code == 0 and yaml.safe_load(out)["data"]["target"]["root"] == "/y"


def test_config_shows_an_override(capsys):
    code, out, _ = run_cli(capsys, "config", "daml", "--task", "benchmark", "mean_teacher.momentum=0.5")
    assert code == 0 and yaml.safe_load(out)["mean_teacher"]["momentum"] == 0.5


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["daml", "--task", "benchmark", "mean_teacher.momentun=0.5"], ["'mean_teacher.momentun'", "momentum"]),
        (["dam", "--task", "benchmark"], ["unknown preset 'dam'"]),
        (["daml", "--task", "cocoo"], ["unknown task 'cocoo'", "coco_small"]),
        (["daml", "--task", "benchmark", "train.batch_size=0"], ["train.batch_size=0", "at least 1"]),
        (["daml", "--task", "benchmark", "train.batch_size=abc"], ["train.batch_size", "an integer"]),
        (["daml", "--task", "coco"], ["data.source_root"]),
    ],
)
def test_config_errors_are_train_errors(argv, words, capsys, tmp_path):
    preset, rest = argv[0], argv[1:]
    code, out, err = run_cli(capsys, "config", preset, *rest)
    assert code == 2 and out == "" and len(err) == 1, err
    assert err[0].startswith("posealign config: error: ")
    for word in words:
        assert word in err[0], (word, err[0])
    out_dir = tmp_path / "run"
    train_code, _, train_err = run_cli(capsys, "train", "--preset", preset, *rest, "--out", str(out_dir))
    assert train_code == code and train_err == [err[0].replace("posealign config:", "posealign train:", 1)]
    assert not out_dir.exists()


def test_eval_prints_a_table_and_json_on_request(own_data, capsys, monkeypatch):
    monkeypatch.chdir(own_data)
    code, out, _ = run_cli(capsys, "eval", "runs/small", "--device", "cpu", "--json")
    numbers = json.loads(out)
    assert code == 0 and set(numbers) == {"target"}
    code, out, _ = run_cli(capsys, "eval", "runs/small", "--device", "cpu")
    lines = out.splitlines()
    assert code == 0 and "final.pt" in lines[0] and "daml" in lines[0] and "teacher" in lines[0]
    assert lines[1].split() == ["Split", *numbers["target"]["groups"], "All"]
    assert lines[3].split() == [
        "target",
        *[f"{v:.1f}" for v in numbers["target"]["groups"].values()],
        f"{numbers['target']['pck']:.1f}",
    ]


def test_output_cut_off_by_its_reader_is_no_internal_error():
    """``posealign config daml | head -3``: the reader is gone before the config is written."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [sys.executable, "-m", "posealign", "config", "daml", "--task", "benchmark"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # before the interpreter has even imported posealign
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141 and err == b"", err.decode()

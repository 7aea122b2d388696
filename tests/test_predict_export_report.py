"""predict, export, report, eval and config on a tiny trained run, and their bad-input errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from posealign.cli import main

TINY = [
    "run.tensorboard=false",
    "run.progress=false",
    "data.image_size=32",
    "data.heatmap_size=32",
    "model.deconv_channels=16",
    "train.batch_size=4",
    "train.pretrain_steps=2",
    "data.benchmark_sizes={source_train: 8, source_test: 8, target_train: 8, target_test: 8, target_val: 8}",
]


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for preset in ("source_only", "oracle"):
        out = root / preset
        assert main(["train", "--preset", preset, "--task", "benchmark", "--out", str(out), *TINY]) == 0
        made[preset] = out
    return made


@pytest.fixture()
def images(tmp_path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg", "sub/c.png"):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_predict_folder_writes_coco_results_and_overlays(runs, images, tmp_path):
    out = tmp_path / "predictions"
    checkpoint = runs["source_only"] / "checkpoints" / "final.pt"
    assert main(["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    results = json.loads((out / "predictions.json").read_text())
    assert len(results) == 3
    for entry in results:
        assert len(entry["keypoints"]) == 16 * 3
        xs, ys = entry["keypoints"][0::3], entry["keypoints"][1::3]
        assert min(xs) >= -1 and max(xs) <= 51 and min(ys) >= -1 and max(ys) <= 41  # original image pixels
    assert len(list((out / "overlays").glob("*.png"))) == 3


def test_predict_with_boxes_gives_one_pose_per_box(runs, images, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.png", "width": 50, "height": 40}],
                "annotations": [
                    {"id": 1, "image_id": 1, "bbox": [0, 0, 20, 30], "category_id": 1},
                    {"id": 2, "image_id": 1, "bbox": [25, 5, 20, 30], "category_id": 1},
                ],
            }
        )
    )
    out = tmp_path / "predictions"
    checkpoint = runs["source_only"] / "checkpoints" / "final.pt"
    assert (
        main(
            [
                "predict",
                str(images / "a.png"),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(out),
                "--boxes",
                str(boxes),
            ]
        )
        == 0
    )
    assert len(json.loads((out / "predictions.json").read_text())) == 2


def test_export_then_predict_matches_the_checkpoint(runs, images, tmp_path):
    checkpoint = runs["source_only"] / "checkpoints" / "final.pt"
    exported = tmp_path / "model.safetensors"
    assert main(["export", str(checkpoint), "--out", str(exported)]) == 0
    assert exported.is_file()
    for source, out in ((checkpoint, tmp_path / "p1"), (exported, tmp_path / "p2")):
        assert main(["predict", str(images), "--checkpoint", str(source), "--out", str(out)]) == 0
    first = json.loads((tmp_path / "p1" / "predictions.json").read_text())
    second = json.loads((tmp_path / "p2" / "predictions.json").read_text())
    assert [e["keypoints"] for e in first] == [e["keypoints"] for e in second]


def test_predict_corrupt_image_is_one_line_and_writes_nothing(runs, images, tmp_path, capsys):
    (images / "broken.png").write_bytes(b"not an image at all")
    out = tmp_path / "predictions"
    code = main(
        [
            "predict",
            str(images),
            "--checkpoint",
            str(runs["source_only"] / "checkpoints" / "final.pt"),
            "--out",
            str(out),
        ]
    )
    message = capsys.readouterr().err.strip()
    assert code != 0
    assert "broken.png" in message and len(message.splitlines()) == 1
    assert not (out / "predictions.json").exists()


def test_predict_missing_box_file_is_one_line(runs, images, tmp_path, capsys):
    missing = tmp_path / "nope.json"
    code = main(
        [
            "predict",
            str(images),
            "--checkpoint",
            str(runs["source_only"] / "checkpoints" / "final.pt"),
            "--out",
            str(tmp_path / "o"),
            "--boxes",
            str(missing),
        ]
    )
    message = capsys.readouterr().err.strip()
    assert code != 0 and "nope.json" in message and len(message.splitlines()) == 1


def test_predict_into_a_folder_of_another_checkpoint_is_refused(runs, images, tmp_path, capsys):
    out = tmp_path / "predictions"
    assert (
        main(
            [
                "predict",
                str(images),
                "--checkpoint",
                str(runs["source_only"] / "checkpoints" / "final.pt"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    before = (out / "predictions.json").read_bytes()
    code = main(
        ["predict", str(images), "--checkpoint", str(runs["oracle"] / "checkpoints" / "final.pt"), "--out", str(out)]
    )
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0 and str(out) in message
    assert (out / "predictions.json").read_bytes() == before


def test_report_writes_page_and_every_figure_it_references(runs, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(runs["source_only"]), str(runs["oracle"]), "--out", str(out)]) == 0
    page = (out / "report.md").read_text()
    assert "| source_only |" in page and "| oracle |" in page
    # Each run's domain gap, from its results.json, in the last column.
    assert page.count("Domain gap (proxy A-distance)") == 1
    for name in ("source_only", "oracle"):
        gap = json.loads((runs[name] / "results.json").read_text())["domain_gap"]["proxy_a_distance"]
        row = next(line for line in page.splitlines() if line.startswith(f"| {name} |"))
        assert row.endswith(f"| {gap:.2f} |")
    for figure in ("pck_curves.png", "per_keypoint.png", "training_curves.png", "predictions.png"):
        assert f"({figure})" in page
        with Image.open(out / figure) as image:
            assert image.width > 400


def test_report_refuses_an_unfinished_run(runs, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs["source_only"], unfinished)
    (unfinished / "results.json").unlink()
    code = main(["report", str(unfinished), "--out", str(tmp_path / "r")])
    message = capsys.readouterr().err.strip()
    assert code != 0 and "unfinished" in message and "results.json" in message


def test_eval_of_an_imagenet_run_loads_no_imagenet_weights(runs, tmp_path, monkeypatch, capsys):
    # A checkpoint trained from ImageNet weights carries model.pretrained=imagenet; its own weights
    # replace them, so eval must not fetch them (offline it would fail with URLError).
    state = torch.load(runs["source_only"] / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    state["config"]["model"]["pretrained"] = "imagenet"
    checkpoint = tmp_path / "imagenet_run.pt"
    torch.save(state, checkpoint)

    def no_download(*args, **kwargs):
        raise AssertionError("eval tried to load ImageNet weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    assert main(["eval", str(checkpoint), "--device", "cpu", "--json"]) == 0
    trained = json.loads((runs["source_only"] / "results.json").read_text())
    assert json.loads(capsys.readouterr().out)["target"]["pck"] == trained["target"]["pck"]


def test_eval_prints_the_demo_table_per_split_and_json_on_request(runs, capsys):
    run = runs["source_only"]
    trained = json.loads((run / "results.json").read_text())
    assert main(["eval", str(run), "--device", "cpu", "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert set(numbers) == {"target", "target_val", "source"}
    assert numbers["target"]["groups"] == trained["target"]["groups"]
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(source_only, student, step 2), PCK@0.05:")
    assert lines[1].split() == ["Split", "Sld", "Elb", "Wrist", "Hip", "Knee", "Ankle", "All"]
    for line, (name, split) in zip(lines[3:], numbers.items(), strict=True):
        cells = [f"{value:.1f}" for value in [*split["groups"].values(), split["pck"]]]
        assert line.split() == [name, *cells]
    # data.eval.X=null leaves split X out; with none left, one line says so.
    assert main(["eval", str(run), "--device", "cpu", "--json", "data.eval.source=null"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"target", "target_val"}
    nothing = ["data.eval.source=null", "data.eval.target=null", "data.eval.target_val=null"]
    assert main(["eval", str(run), "--device", "cpu", *nothing]) == 2
    assert "data.eval is empty" in capsys.readouterr().err


def test_config_prints_the_config_a_benchmark_run_saved(runs, capsys):
    """The benchmark's root comes from --out (beside the run), as in the run's own config.yaml."""
    run = runs["oracle"]
    assert main(["config", "oracle", "--task", "benchmark", "--out", str(run), *TINY]) == 0
    printed = capsys.readouterr().out
    assert printed == (run / "config.yaml").read_text()
    assert yaml.safe_load(printed)["data"]["benchmark_root"] == str(run.parent / "benchmark")


def test_alignment_diagnostics_plots_the_reversal_cap_only_for_runs_that_logged_it(tmp_path):
    """One panel per kind of diagnostic a run logged: the cap's ratio and factor add their own."""
    from posealign.report import _alignment_diagnostics

    def run(with_cap: bool) -> dict:
        rows = []
        for step in (20, 40, 60):
            row = {"kind": "train", "stage": "adapt", "step": step, "grad_loss_sup": 1.0, "grad_loss_adv": 2.5}
            if with_cap:
                row.update(reversal_ratio=5.0, reversal_factor=0.6)
            rows.append(row)
        return {"name": "feature row", "metrics": rows}

    widths = {}
    for with_cap in (False, True):
        path = tmp_path / f"diagnostics_{with_cap}.png"
        assert _alignment_diagnostics([run(with_cap)], path)
        with Image.open(path) as image:
            widths[with_cap] = image.width
    assert widths[True] == pytest.approx(2 * widths[False], rel=0.02)  # two panels against one


class _RunsCode:
    """Pickles as a call of ``os.system``: loading it with plain pickle would run the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


def test_predict_refuses_a_checkpoint_whose_pickle_runs_code(runs, images, tmp_path, capsys):
    marker = tmp_path / "code_ran"
    state = torch.load(runs["source_only"] / "checkpoints" / "final.pt", map_location="cpu", weights_only=True)
    state["config"]["model"]["note"] = _RunsCode(f"touch '{marker}'")
    received = tmp_path / "received.pt"
    torch.save(state, received)

    code = main(["predict", str(images), "--checkpoint", str(received), "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(received) in err[0] and "refused" in err[0] and "system" in err[0], err[0]
    assert not marker.exists() and not (tmp_path / "p").exists()


def test_a_checkpoint_with_numpy_rng_states_still_loads(runs, images, tmp_path):
    """Checkpoints written before the RNG states were stored as tensors hold a numpy array: read as data."""
    state = torch.load(runs["source_only"] / "checkpoints" / "final.pt", map_location="cpu", weights_only=True)
    name, keys, *rest = state["rng"][0]["numpy"]
    state["rng"][0]["numpy"] = (name, keys.numpy(), *rest)
    older = tmp_path / "older.pt"
    torch.save(state, older)
    assert main(["predict", str(images), "--checkpoint", str(older), "--out", str(tmp_path / "p")]) == 0

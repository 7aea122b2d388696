"""``posealign export --format onnx`` and ``posealign predict --checkpoint MODEL.onnx``: the graph gives
the PyTorch model's heatmaps for any batch size, carries the keypoint set, and predicts the same poses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from posealign.cli import main
from posealign.keypoints import HAND21
from posealign.models.simple_baseline import SimpleBaseline
from posealign.onnx_model import load_onnx_model, read_onnx_metadata
from posealign.pose_model_files import PoseModel, Preprocessing, load_pose_model, write_exported_model

pytest.importorskip("onnxruntime", reason="the test extra installs onnxruntime (pip install -e '.[test]')")

IMAGE_SIZE = 64


def randomized_network(num_keypoints: int) -> SimpleBaseline:
    """A small SimpleBaseline whose every weight and BatchNorm statistic is random, so that heatmaps
    are far from zero and a wrong layer, a missing normalisation or training-mode BatchNorm shows."""
    torch.manual_seed(0)
    network = SimpleBaseline(num_keypoints, backbone="resnet18", deconv_layers=2, deconv_channels=16)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        network.head.weight.normal_(std=0.2)
        network.head.bias.uniform_(-0.1, 0.1)
    return network.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """One model as a safetensors export and, through the CLI, as ONNX."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("onnx")
    model = PoseModel(
        network=randomized_network(HAND21.num_keypoints),
        keypoint_set=HAND21,
        preprocessing=Preprocessing(IMAGE_SIZE, IMAGE_SIZE // 8, 2.0),
        model_config={"backbone": "resnet18", "backbone_stages": 4, "deconv_layers": 2, "deconv_channels": 16},
        origin={"checkpoint": "test"},
    )
    safetensors = folder / "model.safetensors"
    write_exported_model(model, safetensors)
    onnx_file = folder / "model.onnx"
    assert main(["export", str(safetensors), "--format", "onnx", "--out", str(onnx_file)]) == 0
    return {"safetensors": safetensors, "onnx": onnx_file}


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_heatmaps_match_pytorch_for_any_batch_size(exported, batch):
    reference = load_pose_model(exported["safetensors"])
    runtime = load_onnx_model(exported["onnx"])
    images = torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = reference.network(images)[0]
    heatmaps, _ = runtime.network(images)
    assert heatmaps.shape == expected.shape == (batch, HAND21.num_keypoints, IMAGE_SIZE // 8, IMAGE_SIZE // 8)
    assert expected.abs().max() > 0.1  # random weights that give heatmaps worth comparing
    assert (heatmaps - expected).abs().max() <= 1e-4


def test_onnx_metadata_holds_the_keypoint_set_and_preprocessing(exported):
    metadata = {
        key: json.loads(value) for key, value in read_onnx_metadata(exported["onnx"]).items() if key != "format"
    }
    assert metadata["keypoint_set"]["names"] == list(HAND21.names)
    assert metadata["keypoint_set"]["flip_pairs"] == [list(pair) for pair in HAND21.flip_pairs]
    assert metadata["keypoint_set"]["skeleton"] == [[i + 1, j + 1] for i, j in HAND21.skeleton]
    assert metadata["image_size"] == IMAGE_SIZE and metadata["heatmap_size"] == IMAGE_SIZE // 8
    assert metadata["normalization"]["mean"] == [0.485, 0.456, 0.406]
    runtime = load_onnx_model(exported["onnx"])
    assert runtime.keypoint_set == HAND21
    assert runtime.fingerprint() == load_pose_model(exported["safetensors"]).fingerprint()


def test_predict_with_onnx_writes_the_pytorch_models_predictions(exported, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name, (height, width) in {"a.png": (48, 70), "b.png": (80, 60), "c.png": (64, 64)}.items():
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(photos / name)
    results = {}
    for kind in ("safetensors", "onnx"):
        out = tmp_path / kind
        code = main(
            ["predict", str(photos), "--checkpoint", str(exported[kind]), "--out", str(out), "--batch-size", "2"]
        )
        assert code == 0
        results[kind] = json.loads((out / "predictions.json").read_text())
    assert [r["file_name"] for r in results["onnx"]] == [r["file_name"] for r in results["safetensors"]]
    for torch_pose, onnx_pose in zip(results["safetensors"], results["onnx"], strict=True):
        assert np.allclose(onnx_pose["keypoints"], torch_pose["keypoints"], atol=1e-3)
        assert onnx_pose["score"] == pytest.approx(torch_pose["score"], abs=1e-4)
    info = json.loads((tmp_path / "onnx" / "predictions_info.json").read_text())
    assert info["keypoint_set"]["names"] == list(HAND21.names)


def test_a_broken_onnx_file_is_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07 this is not a protobuf graph \xff\xfe")
    Image.new("RGB", (20, 20)).save(tmp_path / "x.png")
    assert main(["predict", str(tmp_path / "x.png"), "--checkpoint", str(broken), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(broken) in error and "export it again" in error


def test_an_onnx_file_without_posealign_metadata_is_one_line(exported, tmp_path, capsys):
    import onnx

    graph = onnx.load(str(exported["onnx"]))
    del graph.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(graph, str(foreign))
    Image.new("RGB", (20, 20)).save(tmp_path / "x.png")
    assert main(["predict", str(tmp_path / "x.png"), "--checkpoint", str(foreign), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "without posealign metadata" in error and str(foreign) in error


def test_commands_that_need_the_pytorch_weights_refuse_an_onnx_file_in_one_line(exported, tmp_path, capsys):
    assert main(["export", str(exported["onnx"]), "--out", str(tmp_path / "again.safetensors")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "runs in posealign predict only" in error
    assert not (tmp_path / "again.safetensors").exists()

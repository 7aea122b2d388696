"""``posealign predict --mirror``: the network sees each crop flipped left-right, as training flips a
right hand (``PoseRecord.mirror``), and the keypoints come back in the unflipped image's pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from posealign.cli import main
from posealign.data.pose_dataset import crop_record
from posealign.data.records import PoseRecord
from tests.tiny_models import write_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def keypoints_of(out: Path) -> tuple[np.ndarray, np.ndarray]:
    (entry,) = json.loads((out / "predictions.json").read_text())
    values = np.asarray(entry["keypoints"], dtype=np.float64).reshape(-1, 3)
    return values[:, :2], values[:, 2]


def test_mirror_predicts_the_flipped_image_and_maps_x_back(model, tmp_path):
    # 64 x 64: the tiny model's crop size, so the whole-image crop is not resized and the network's
    # input with --mirror is exactly the flipped image's crop without it.
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "hand.png")
    Image.fromarray(pixels[:, ::-1].copy()).save(tmp_path / "flipped.png")
    for name, extra in (("mirrored", ["--mirror"]), ("flipped", []), ("plain", [])):
        image = tmp_path / ("flipped.png" if name == "flipped" else "hand.png")
        assert main(["predict", str(image), "--checkpoint", str(model), "--out", str(tmp_path / name), *extra]) == 0
    mirrored, mirrored_score = keypoints_of(tmp_path / "mirrored")
    flipped, flipped_score = keypoints_of(tmp_path / "flipped")
    plain, _ = keypoints_of(tmp_path / "plain")
    # Pixel column c of the flipped image is column 63 - c of the original.
    np.testing.assert_allclose(mirrored[:, 0], 63.0 - flipped[:, 0], atol=1e-3)
    np.testing.assert_allclose(mirrored[:, 1], flipped[:, 1], atol=1e-3)
    np.testing.assert_allclose(mirrored_score, flipped_score, atol=1e-5)
    assert np.abs(mirrored - plain).max() > 1.0  # the flip reached the network
    info = json.loads((tmp_path / "mirrored" / "predictions_info.json").read_text())
    assert info["mirror"] is True


def test_mirror_inverts_the_training_flip_of_a_right_hand(tmp_path):
    # A right hand's training crop (PoseRecord.mirror) and its label: mapping the label back through
    # the box --mirror uses (image_crops.mirror_crop) gives the annotated point in the original image.
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(tmp_path / "hand.png")
    keypoints = np.array([[12.0, 30.0], [50.0, 41.0], [33.5, 9.25]], dtype=np.float32)
    record = PoseRecord(
        image=tmp_path / "hand.png",
        keypoints=keypoints,
        visible=np.ones(3, bool),
        bbox=np.array([12.0, 9.0, 38.0, 32.0], dtype=np.float32),
        crop_box=np.array([5.0, 2.0, 60.0, 60.0], dtype=np.float32),
        mirror=True,
    )
    _, labels, box = crop_record(record, 32)
    x, y, w, h = box
    assert w < 0 < h
    back = np.stack([x + labels[:, 0] * w / 32, y + labels[:, 1] * h / 32], 1)
    np.testing.assert_allclose(back, keypoints, atol=1e-4)


def test_mirror_reaches_every_video_frame(model, tmp_path):
    from posealign.inference import predict_images
    from posealign.onnx_model import load_model_for_prediction
    from posealign.video_io import probe_video, read_video_frames
    from tests.test_predict_video import write_video

    clip = tmp_path / "clip.mp4"
    write_video(clip, frames=4)
    out = tmp_path / "out"
    assert (
        main(["predict", str(clip), "--checkpoint", str(model), "--out", str(out), "--mirror", "--device", "cpu"]) == 0
    )
    written = json.loads((out / "videos" / "clip.predictions.json").read_text())
    frames = [Image.fromarray(pixels) for pixels in read_video_frames(probe_video(clip))]
    loaded = load_model_for_prediction(model)
    expected = predict_images(loaded.network, frames, None, loaded.preprocessing.image_size, mirror=True)
    unmirrored = predict_images(loaded.network, frames, None, loaded.preprocessing.image_size)
    assert len(written) == len(frames) == 4
    for entry, poses, plain in zip(written, expected, unmirrored, strict=True):
        got = np.asarray(entry["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        np.testing.assert_allclose(got, poses[0].keypoints, atol=1e-3)
        assert np.abs(got - plain[0].keypoints).max() > 1.0

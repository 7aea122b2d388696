"""A photo stored sideways with an EXIF orientation tag (as phones store them) is read in the frame a
viewer shows: ``predict`` gives the same keypoints, and a COCO dataset the same crops, as for the same
picture stored upright."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from posealign.benchmark.domains import TARGET_STYLE
from posealign.benchmark.render import render_example
from posealign.cli import main
from posealign.data.coco import load_coco
from posealign.data.pose_dataset import CroppedPoseDataset
from posealign.image_crops import read_image_size, read_rgb_image
from tests.tiny_models import write_tiny_model

# EXIF orientation -> the np.rot90 turn (counter-clockwise quarter turns) a viewer applies to the stored pixels.
VIEWER_TURN = {6: -1, 8: 1}
ORIENTATION_TAG = 0x0112


def save_phone_photo(upright: np.ndarray, orientation: int, path: Path) -> np.ndarray:
    """Store ``upright`` turned as a phone stores it, with the EXIF tag that turns it back; returns the
    pixels a viewer shows (the stored JPEG's own pixels turned with numpy, not with PIL)."""
    stored = np.ascontiguousarray(np.rot90(upright, k=-VIEWER_TURN[orientation]))
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as raw:  # PIL does not apply the tag on its own
        assert raw.getexif()[ORIENTATION_TAG] == orientation
        return np.ascontiguousarray(np.rot90(np.asarray(raw.convert("RGB")), k=VIEWER_TURN[orientation]))


@pytest.fixture()
def photos(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """A benchmark figure on a wider-than-high canvas, stored with orientations 8 and 6, and each as a
    viewer shows it, stored upright as PNG (lossless, so the pixels are the viewer's exactly)."""
    figure = render_example(np.random.default_rng(3), TARGET_STYLE, 64).image
    upright = np.zeros((64, 96, 3), np.uint8)
    upright[:, 20:84] = figure
    folder = tmp_path / "photos"
    folder.mkdir()
    shown = {}
    for orientation in VIEWER_TURN:
        shown[f"phone{orientation}.jpg"] = save_phone_photo(upright, orientation, folder / f"phone{orientation}.jpg")
        Image.fromarray(shown[f"phone{orientation}.jpg"]).save(folder / f"upright{orientation}.png")
    return folder, shown


def test_reader_applies_the_orientation_to_pixels_and_size(photos):
    folder, shown = photos
    for name, pixels in shown.items():
        assert np.array_equal(np.asarray(read_rgb_image(folder / name, "", "")), pixels)
        assert read_image_size(folder / name) == (96, 64)  # stored 64 wide and 96 high


def test_predict_gives_the_upright_keypoints_for_a_sideways_photo(photos, tmp_path):
    torch.set_num_threads(1)
    folder, _ = photos
    model = write_tiny_model(tmp_path / "tiny.safetensors")
    out = tmp_path / "predictions"
    assert main(["predict", str(folder), "--checkpoint", str(model), "--out", str(out), "--device", "cpu"]) == 0
    results = {entry["file_name"]: entry for entry in json.loads((out / "predictions.json").read_text())}
    for orientation in VIEWER_TURN:
        phone, upright = results[f"phone{orientation}.jpg"], results[f"upright{orientation}.png"]
        assert phone["keypoints"] == upright["keypoints"]
        assert phone["bbox"] == upright["bbox"] == [0, 0, 96, 64]
        with Image.open(out / "overlays" / f"phone{orientation}.png") as overlay:
            assert overlay.width > overlay.height  # drawn upright, not on its side


@pytest.mark.parametrize("crop", ["image", "bbox"])
def test_a_coco_dataset_crops_a_sideways_photo_as_the_upright_one(photos, crop):
    """The annotation, in the viewer's frame, is the same for both files; the entries have no
    width/height, so the whole-image crop needs the viewer's size too."""
    folder, _ = photos
    keypoints = [30.0, 20.0, 2, 60.0, 40.0, 2, 50.0, 10.0, 2]
    coco = {
        "images": [{"id": i, "file_name": name} for i, name in enumerate(sorted(p.name for p in folder.iterdir()))],
        "categories": [{"id": 1, "name": "figure", "keypoints": ["a", "b", "c"], "skeleton": [[1, 2], [2, 3]]}],
    }
    coco["annotations"] = [
        {"id": i, "image_id": i, "category_id": 1, "bbox": [24, 6, 44, 50], "keypoints": keypoints}
        for i in range(len(coco["images"]))
    ]
    (folder / "annotations").mkdir()
    (folder / "annotations" / "train.json").write_text(json.dumps(coco))
    dataset = CroppedPoseDataset(load_coco(folder, "train", crop=crop), image_size=32)
    items = {Path(record.image).name: dataset[i] for i, record in enumerate(dataset.dataset.records)}
    for orientation in VIEWER_TURN:
        phone, upright = items[f"phone{orientation}.jpg"], items[f"upright{orientation}.png"]
        assert torch.equal(phone["image"], upright["image"])
        assert torch.equal(phone["crop_box"], upright["crop_box"])

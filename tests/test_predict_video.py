"""``posealign predict`` on videos: the COCO results, the DeepLabCut table read back as the field
reads it, the overlay video's frame rate and length, the crops (--box, per-frame --boxes), and the
one-line errors of bad inputs, after which the files written before are unchanged."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from posealign.benchmark.domains import TARGET_STYLE
from posealign.benchmark.render import render_examples
from posealign.cli import main
from posealign.keypoints import BODY16
from posealign.video_io import probe_video, read_video_frames
from tests.tiny_models import write_tiny_model

FRAMES, FPS = 10, 12.5


def write_video(path: Path, frames: int = FRAMES, fps: float = FPS, extra: list[str] | None = None) -> None:
    """Benchmark figures 64 x 48, one per frame, encoded by imageio-ffmpeg's own writer (not posealign's)."""
    rngs = [np.random.default_rng(index) for index in range(frames)]
    writer = imageio_ffmpeg.write_frames(
        str(path), (64, 48), fps=fps, macro_block_size=16, ffmpeg_log_level="error", output_params=extra or []
    )
    writer.send(None)
    for example in render_examples(rngs, TARGET_STYLE, 64):
        writer.send(np.ascontiguousarray(example.image[8:56]).tobytes())
    writer.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    write_video(path, extra=["-movflags", "+faststart"])  # index first: a cut copy still opens, then breaks
    return path


def predict(*arguments) -> int:
    return main(["predict", *map(str, arguments), "--device", "cpu", "--batch-size", "4"])


def test_video_gives_results_table_and_overlay_of_every_frame(model, clip, tmp_path):
    out = tmp_path / "out"
    assert predict(clip, "--checkpoint", model, "--out", out, "--overlay") == 0
    results = json.loads((out / "videos" / "clip.predictions.json").read_text())
    assert [entry["image_id"] for entry in results] == list(range(FRAMES))
    assert {entry["file_name"] for entry in results} == {str(clip)}

    # The table as DeepLabCut and movement read it: three header rows, the frame as the index.
    # movement checks the rows' first cells (a digit in the fourth: one animal), then reads the header.
    with open(out / "videos" / "clip.csv") as handle:
        assert [handle.readline().split(",")[0] for _ in range(4)] == ["scorer", "bodyparts", "coords", "0"]
    table = pd.read_csv(out / "videos" / "clip.csv", header=[0, 1, 2], index_col=0)
    assert list(table.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(table.index) == list(range(FRAMES))
    assert list(table.columns.get_level_values("bodyparts").unique()) == list(BODY16.names)
    assert list(table.columns.get_level_values("coords")[:3]) == ["x", "y", "likelihood"]
    triples = np.array([entry["keypoints"] for entry in results]).reshape(FRAMES, -1, 3)
    assert np.allclose(table.to_numpy().reshape(FRAMES, -1, 3)[..., :2], triples[..., :2])

    # Frame k of the results is frame k of the file: the same keypoints as that frame predicted as an image.
    stills = tmp_path / "stills"
    stills.mkdir()
    reader = imageio_ffmpeg.read_frames(str(clip))
    width, height = next(reader)["size"]
    for index, data in enumerate(reader):
        pixels = np.frombuffer(data, np.uint8).reshape(height, width, 3)
        Image.fromarray(pixels).save(stills / f"{index:03d}.png")
    assert predict(stills, "--checkpoint", model, "--out", tmp_path / "stills_out") == 0
    still_results = json.loads((tmp_path / "stills_out" / "predictions.json").read_text())
    assert [entry["keypoints"] for entry in still_results] == [entry["keypoints"] for entry in results]

    overlay = out / "videos" / "clip.overlay.mp4"
    reader = imageio_ffmpeg.read_frames(str(overlay))
    assert next(reader)["fps"] == FPS
    reader.close()
    assert imageio_ffmpeg.count_frames_and_secs(str(overlay))[0] == FRAMES


def test_a_rotated_video_is_read_as_a_player_shows_it(clip, tmp_path):
    """A phone video stores its frames sideways with a display rotation, as a phone photo its EXIF tag."""
    rotated = tmp_path / "rotated.mp4"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(clip)]
    subprocess.run([*command, "-c", "copy", str(rotated)], check=True)
    stored, shown = probe_video(clip), probe_video(rotated)
    assert (shown.width, shown.height, shown.frames) == (stored.height, stored.width, stored.frames)
    for upright, turned in zip(read_video_frames(stored), read_video_frames(shown), strict=True):
        assert np.array_equal(np.rot90(upright), turned)  # 90 degrees counter-clockwise, as the matrix says


def test_fixed_box_and_per_frame_boxes(model, clip, tmp_path):
    assert predict(clip, "--checkpoint", model, "--out", tmp_path / "fixed", "--box", "10,5,30,40") == 0
    fixed = json.loads((tmp_path / "fixed" / "videos" / "clip.predictions.json").read_text())
    assert len(fixed) == FRAMES and all(entry["bbox"] == [10, 5, 30, 40] for entry in fixed)

    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"videos": {"clip.mp4": {"0": [0, 0, 20, 20], "2": [30, 10, 30, 30], "3": None}}}))
    assert predict(clip, "--checkpoint", model, "--out", tmp_path / "per_frame", "--boxes", boxes) == 0
    per_frame = json.loads((tmp_path / "per_frame" / "videos" / "clip.predictions.json").read_text())
    assert [(entry["image_id"], entry["bbox"]) for entry in per_frame] == [(0, [0, 0, 20, 20]), (2, [30, 10, 30, 30])]
    table = pd.read_csv(tmp_path / "per_frame" / "videos" / "clip.csv", header=[0, 1, 2], index_col=0)
    assert len(table) == FRAMES  # a row for every frame, empty where there was no box
    assert table.loc[[0, 2]].notna().all().all() and table.drop(index=[0, 2]).isna().all().all()


def _zero_frame_video(path: Path, source: Path) -> Path:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(source), "-frames:v", "0", str(path)]
    subprocess.run(command, check=True)
    return path


BAD_INPUTS = {  # case -> (the file written over the good video, its content, extra arguments)
    "truncated": lambda folder, clip: (folder / "clip.mp4", clip.read_bytes()[: clip.stat().st_size * 6 // 10], []),
    "not_a_video": lambda folder, clip: (folder / "clip.mp4", b"not a video at all", []),
    "box_outside": lambda folder, clip: (folder / "clip.mp4", clip.read_bytes(), ["--box", "64,0,10,10"]),
}
SAYS = {
    "truncated": "truncated or corrupt after frame",
    "not_a_video": "cannot be read as a video",
    "box_outside": "lies outside the 64x48 frame",
    "zero_frames": "holds no video frames",
    "bad_box_json": "not valid JSON",
    "box_file_frame_past_end": "box for frame 10, but",
}


@pytest.mark.parametrize("case", SAYS)
def test_bad_input_is_one_line_naming_the_file_and_keeps_earlier_outputs(model, clip, tmp_path, capsys, case):
    folder, out = tmp_path / "videos", tmp_path / "out"
    folder.mkdir()
    video = folder / "clip.mp4"
    video.write_bytes(clip.read_bytes())
    assert predict(video, "--checkpoint", model, "--out", out, "--overlay") == 0
    written = {path.name: path.read_bytes() for path in (out / "videos").iterdir()}
    capsys.readouterr()

    extra, named = [], video
    if case in BAD_INPUTS:
        path, content, extra = BAD_INPUTS[case](folder, clip)
        path.write_bytes(content)
    elif case == "zero_frames":
        named = _zero_frame_video(folder / "empty.avi", clip)
        video = named
    else:
        named = tmp_path / "boxes.json"
        frames = {str(FRAMES): [0, 0, 10, 10]} if case == "box_file_frame_past_end" else None
        named.write_text("{not json" if frames is None else json.dumps({"videos": {"clip.mp4": frames}}))
        extra = ["--boxes", named]
    # batches of one: the overlay of a truncated video is under way when its end turns out broken
    code = predict(video, "--checkpoint", model, "--out", out, "--overlay", "--batch-size", "1", *extra)
    message = capsys.readouterr().err.strip()
    assert code == 2
    assert len(message.splitlines()) == 1 and str(named) in message and SAYS[case] in message, message
    assert {path.name: path.read_bytes() for path in (out / "videos").iterdir()} == written  # unchanged, no leftovers

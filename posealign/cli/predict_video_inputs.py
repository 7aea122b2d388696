"""What ``posealign predict`` reads for videos: the videos themselves (probed), the fixed box of
``--box`` and the per-frame boxes of a ``--boxes`` file's ``videos`` section.

The per-frame box file (JSON)::

    {"videos": {"clip.mp4": {"0": [x, y, w, h], "1": [x, y, w, h], "7": null, ...}}}

Each key of ``videos`` names a video as COCO ``file_name`` names an image (the longest trailing part
of its path wins: ``clip.mp4`` or ``day1/clip.mp4``); its value maps a frame index (0-based, as a
string, since JSON keys are strings) to that frame's box in pixels of the frame as shown: one object
per frame. A frame without a key, or with ``null``, has no box and gets no pose (an empty row in the
CSV). The same file may also hold a COCO ``images``/``annotations`` part for the images given.

Everything here is checked before the model runs, so a bad file is one line naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from posealign.cli.predict_inputs import ImageInput, listed_name, read_box_json
from posealign.errors import UserError
from posealign.video_io import VideoInfo, probe_video

Box = list[float]  # x, y, w, h in pixels


@dataclass
class VideoInput:
    """A video to predict: its name in the results, what ``probe_video`` found, and the crop of each
    frame: ``box`` for every frame, or ``frame_boxes`` (frame index -> box; frames not listed get no
    pose), or neither (the whole frame)."""

    file_name: str
    info: VideoInfo
    box: Box | None = None
    frame_boxes: dict[int, Box] | None = None

    def boxes_of(self, frame: int) -> list[Box] | None:
        """The boxes to crop in ``frame``: None for the whole frame, [] when the frame has no box."""
        if self.frame_boxes is not None:
            box = self.frame_boxes.get(frame)
            return [] if box is None else [box]
        return None if self.box is None else [self.box]


def _valid_box(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        and value[2] > 0
        and value[3] > 0
    )


def parse_box_option(text: str) -> Box:
    """``--box x,y,w,h`` -> [x, y, w, h], or a one-line error."""
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if not _valid_box(box):
        raise UserError(
            f"--box {text!r}: give x,y,w,h in pixels with a positive width and height, e.g. --box 40,20,300,200"
        )
    return box


def check_box_in_frame(box: Box, width: int, height: int, where: str) -> None:
    """A box that does not overlap the ``width`` x ``height`` frame crops nothing but padding: an error.
    A box partly outside is fine (the crop is zero-padded there, as at training)."""
    x, y, w, h = box
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise UserError(
            f"{where}: box [x, y, w, h] = {[round(v, 2) for v in box]} lies outside the {width}x{height} frame; "
            "give a box inside the frame"
        )


def read_video_box_file(path: Path) -> dict[str, dict[int, Box | None]]:
    """The ``videos`` section of a box file: video name -> {frame index: box or None}."""
    content = read_box_json(path, "pass a JSON file with a 'videos' section", "fix the file")
    videos = content.get("videos") if isinstance(content, dict) else None
    if not isinstance(videos, dict) or not videos:
        raise UserError(
            f'{path}: box file has no \'videos\' section for the videos given; write {{"videos": {{"clip.mp4": '
            '{"0": [x, y, w, h], ...}}}} (frame index -> box), or pass --box x,y,w,h for a fixed box'
        )
    parsed: dict[str, dict[int, Box | None]] = {}
    for name, frames in videos.items():
        if not isinstance(frames, dict):
            raise UserError(f"{path}: videos[{name!r}] is not a mapping of frame index -> [x, y, w, h]; fix the file")
        boxes: dict[int, Box | None] = {}
        for key, box in frames.items():
            if not (isinstance(key, str) and key.isdigit()):
                raise UserError(f"{path}: videos[{name!r}] has frame key {key!r}; keys are frame indices 0, 1, 2 ...")
            if box is not None and not _valid_box(box):
                raise UserError(
                    f"{path}: videos[{name!r}] frame {key} has box {box!r}; give [x, y, w, h] with a positive "
                    "width and height, or null for no box"
                )
            boxes[int(key)] = None if box is None else [float(v) for v in box]
        parsed[str(name)] = boxes
    return parsed


def prepare_videos(videos: list[ImageInput], box: Box | None, box_file: Path | None) -> list[VideoInput]:
    """Probe every video and give it its crop; every box is checked against its video's frames."""
    listed = read_video_box_file(box_file) if box_file is not None and videos else None
    prepared = []
    for video in videos:
        info = probe_video(video.path)
        item = VideoInput(file_name=video.file_name, info=info, box=box)
        if box is not None:
            check_box_in_frame(box, info.width, info.height, f"{video.path}: --box")
        if listed is not None:
            name = listed_name(video.path, list(listed))
            if name is None:
                raise UserError(
                    f"{video.path}: not listed in the 'videos' of {box_file}; add it there or leave it out of the inputs"
                )
            item.frame_boxes = {}
            for frame, frame_box in listed[name].items():
                if frame >= info.frames:
                    raise UserError(
                        f"{box_file}: videos[{name!r}] has a box for frame {frame}, but {video.path} has "
                        f"{info.frames} frames (0..{info.frames - 1}); is it the box file of this video?"
                    )
                if frame_box is not None:
                    check_box_in_frame(
                        frame_box, info.width, info.height, f"{box_file}: videos[{name!r}] frame {frame}"
                    )
                    item.frame_boxes[frame] = frame_box
        prepared.append(item)
    return prepared

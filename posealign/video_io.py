"""Video files in and out, through the ffmpeg binary that the imageio-ffmpeg wheel ships (no system
ffmpeg needed): ``probe_video`` (size, frame rate, frame count), ``read_video_frames`` (RGB frames in
order) and ``VideoWriter`` (an H.264 MP4).

Frames come as the video is shown: ffmpeg applies a phone video's rotation, as posealign applies a
photo's EXIF orientation (:mod:`posealign.image_crops`). Every decoded frame comes out once, in
order (``-fps_mode passthrough``), so a frame's index is its position in the file, as in DeepLabCut
and OpenCV. Decoding stops at the first error (``-xerror``): a truncated or corrupt file is an error
naming it, never a silently shorter list of frames.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from posealign.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov")  # what folder inputs of predict are searched for, besides images
_CONVERT_FIX = "convert it (ffmpeg -i IN -c:v libx264 OUT.mp4) or leave it out"


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _first_error_line(log: bytes) -> str:
    """The first line of ffmpeg's log that says what went wrong, shortened for a one-line message."""
    lines = [re.sub(r"^(\[[^\]]*\] )+", "", line.strip()) for line in log.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    return (lines[0] if lines else "no message")[:160]


@dataclass(frozen=True)
class VideoInfo:
    """A readable video: frame size as shown (rotation applied), frame rate and number of frames."""

    path: Path
    width: int
    height: int
    fps: float
    frames: int


def _count_frames(path: Path) -> tuple[bool, bool, int]:
    """(ffmpeg opened the file, it holds a video stream, the number of that stream's frames). The
    packets are counted without decoding them (``-c copy``), so this takes a moment even for long videos."""
    command = [
        _ffmpeg(),
        "-hide_banner",
        "-nostdin",
        "-i",
        str(path),
        "-map",
        "0:v:0?",
        "-c",
        "copy",
        "-f",
        "null",
        "-",
    ]
    log = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True).stderr.decode(errors="replace")
    progress = re.findall(r"frame=\s*(\d+)", log)
    return (
        "Input #0" in log,
        re.search(r"Stream #0:\d+.*: Video:", log) is not None,
        int(progress[-1]) if progress else 0,
    )


def probe_video(path: Path) -> VideoInfo:
    """Size, frame rate and frame count of a video file, or a one-line ``UserError`` naming it
    (missing, not a video, no video stream, no frames)."""
    import imageio_ffmpeg

    if not path.is_file():
        raise UserError(f"{path}: video file not found; pass existing files")
    opened, has_video, frames = _count_frames(path)
    if not opened:
        raise UserError(
            f"{path}: cannot be read as a video (not a video, or a truncated or damaged one); pass a complete "
            "video file or leave it out"
        )
    if not has_video or frames == 0:
        raise UserError(f"{path}: holds no video frames; pass a video with at least one frame")
    reader = imageio_ffmpeg.read_frames(str(path))
    quiet = logging.getLogger("imageio_ffmpeg")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # a rotated video's size is expected to differ from the stored one
    try:
        meta = next(reader)
    except (OSError, RuntimeError, ValueError, StopIteration, IndexError):
        raise UserError(f"{path}: cannot be read as a video (no readable video stream); {_CONVERT_FIX}") from None
    finally:
        reader.close()
        quiet.setLevel(level)
    width, height = (int(v) for v in meta.get("size") or (0, 0))
    fps = float(meta.get("fps") or 0.0)
    if width < 2 or height < 2 or not fps > 0:
        raise UserError(f"{path}: video has frame size {width}x{height} and {fps} frames/s; {_CONVERT_FIX}")
    return VideoInfo(path=path, width=width, height=height, fps=fps, frames=frames)


def read_video_frames(info: VideoInfo) -> Iterator[np.ndarray]:
    """The frames of a probed video, (H, W, 3) uint8 RGB, in order. A decoding error (a truncated or
    corrupt file) raises a one-line ``UserError`` naming the file and the frame reached, after the
    frames decoded before it."""
    command = [_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-xerror", "-i", str(info.path)]
    command += ["-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    frame_bytes = info.width * info.height * 3
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: ffmpeg never blocks on its own log
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        count = 0
        try:
            while True:
                data = process.stdout.read(frame_bytes)
                if len(data) < frame_bytes:
                    break
                count += 1
                yield np.frombuffer(data, np.uint8).reshape(info.height, info.width, 3)
            returncode = process.wait()
        finally:
            if process.poll() is None:  # the caller stopped early
                process.kill()
                process.wait()
            process.stdout.close()
        if returncode != 0 or data:
            log.seek(0)
            raise UserError(
                f"{info.path}: video is truncated or corrupt after frame {count} "
                f"(ffmpeg: {_first_error_line(log.read())}); replace it with a complete copy or leave it out"
            )


class VideoWriter:
    """Frames (H, W, 3) uint8 RGB of one size -> an H.264 MP4 at ``fps`` that any player shows.

    An odd width or height gets one black row or column (H.264 in yuv420p needs even sizes).
    ``close()`` raises a ``UserError`` naming ``path`` when ffmpeg fails.
    """

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        self.path, self.width, self.height = path, width, height
        self._pad = (height % 2, width % 2)
        rate = Fraction(fps).limit_denominator(100000)
        command = [_ffmpeg(), "-y", "-hide_banner", "-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
        command += ["-s", f"{width + self._pad[1]}x{height + self._pad[0]}", "-r", str(rate), "-i", "-", "-an"]
        command += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"]
        command += ["-movflags", "+faststart", "-f", "mp4", str(path)]
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame of shape {frame.shape}, the video is {self.height}x{self.width}x3")
        if any(self._pad):
            frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)))
        try:
            self._process.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
        except BrokenPipeError:
            self.close()  # raises with ffmpeg's message

    def close(self) -> None:
        if self._process.stdin and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
        returncode = self._process.wait()
        self._log.seek(0)
        message = self._log.read()
        self._log.close()
        if returncode != 0:
            raise UserError(f"{self.path}: cannot write the video (ffmpeg: {_first_error_line(message)})")

    def abort(self) -> None:
        """Stop without finishing the file (the caller discards it)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._process.stdin and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
        self._log.close()

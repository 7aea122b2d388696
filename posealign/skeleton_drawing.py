"""Drawing a pose on an image: keypoints coloured by body side and sized by confidence, links from
the keypoint set. Used for predict's overlays, the report's grid and TensorBoard's images."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from posealign.keypoints import KeypointSet

# Left limbs warm, right limbs cool, the rest grey: the usual convention of pose viewers.
_LEFT, _RIGHT, _CENTRE = (255, 140, 0), (0, 160, 255), (200, 200, 200)


def _side_colour(name: str) -> tuple[int, int, int]:
    lowered = name.lower()
    if lowered.startswith(("left", "l_")):
        return _LEFT
    if lowered.startswith(("right", "r_")):
        return _RIGHT
    return _CENTRE


def draw_pose(
    image: Image.Image | np.ndarray,
    keypoints: np.ndarray,
    confidence: np.ndarray | None,
    keypoint_set: KeypointSet,
    min_confidence: float = 0.1,
    scale: float = 1.0,
    label_confidence: bool = False,
) -> Image.Image:
    """Draw a pose on a copy of ``image`` (PIL or HWC uint8). keypoints (K, 2) in image pixels.

    Keypoints below ``min_confidence`` are hollow and their links are not drawn; the dot's size
    grows with the confidence. ``scale`` enlarges small images first so the overlay stays readable.
    """
    canvas = Image.fromarray(image) if isinstance(image, np.ndarray) else image.copy()
    canvas = canvas.convert("RGB")
    if scale != 1.0:
        canvas = canvas.resize((round(canvas.width * scale), round(canvas.height * scale)), Image.NEAREST)
    points = np.asarray(keypoints, dtype=np.float32) * scale
    confidence = np.ones(len(points)) if confidence is None else np.asarray(confidence, dtype=np.float32)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(min(canvas.size) / 80))
    for i, j in keypoint_set.skeleton:
        if confidence[i] >= min_confidence and confidence[j] >= min_confidence:
            colour = (
                _side_colour(keypoint_set.names[i])
                if _side_colour(keypoint_set.names[i]) == _side_colour(keypoint_set.names[j])
                else _CENTRE
            )
            draw.line([tuple(points[i]), tuple(points[j])], fill=colour, width=width)
    for index, ((x, y), c) in enumerate(zip(points, confidence, strict=True)):
        radius = width * (1.0 + 1.5 * float(np.clip(c, 0, 1)))
        colour = _side_colour(keypoint_set.names[index])
        box = (x - radius, y - radius, x + radius, y + radius)
        if c >= min_confidence:
            draw.ellipse(box, fill=colour, outline=(0, 0, 0))
        else:
            draw.ellipse(box, outline=colour)
        if label_confidence:
            _label(draw, (x + radius + 2, y - radius), f"{float(c):.2f}", size=max(10, round(min(canvas.size) / 40)))
    return canvas


def _label(draw: ImageDraw.ImageDraw, position: tuple[float, float], text: str, size: int) -> None:
    """White text on a black box: readable on light and dark backgrounds alike."""
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = ImageFont.load_default()
    left, top, right, bottom = draw.textbbox(position, text, font=font)
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=(0, 0, 0))
    draw.text(position, text, fill=(255, 255, 255), font=font)

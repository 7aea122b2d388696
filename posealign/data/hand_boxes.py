"""The hand datasets' boxes, integer for integer as the anchors compute them.

UDAPE's and the Transfer-Learning-Library's hand classes (``lib/datasets/util.py``) crop a hand by
the keypoints' tight box made square and 1.5x larger, shifted (not padded) to lie inside the image,
and then cut ``side - 1`` pixels of it (their crop takes ``lower - upper`` rows of an inclusive box).
RHD also keeps or drops a hand by the area (inclusive pixel counts) its scaled box shares with the
other hand's tight box. The functions here return the same integers, so the crops, and which hands
are kept, equal the anchors'.
"""

from __future__ import annotations

import numpy as np

CROP_SCALE = 1.5  # the anchors' "1.5 times larger than the hand"

Box = tuple[float, float, float, float]  # left, upper, right, lower (inclusive for scaled boxes)


def keypoint_box(keypoints: np.ndarray) -> Box:
    """Tight box of all keypoints (visible or not, as the anchors take it)."""
    return (
        float(keypoints[:, 0].min()),
        float(keypoints[:, 1].min()),
        float(keypoints[:, 0].max()),
        float(keypoints[:, 1].max()),
    )


def scaled_square_box(box: Box, image_width: int, image_height: int, scale: float = CROP_SCALE) -> Box:
    """The anchors' ``scale_box``: a square of ``round(scale * longest side)`` (at most the image's
    shorter side) around the box's centre, shifted back inside the image where it crosses an edge."""
    left, upper, right, lower = box
    center_x, center_y = (left + right) / 2, (upper + lower) / 2
    side = min(round(scale * max(right - left, lower - upper)), min(image_width, image_height))
    left = round(center_x - side / 2)
    right = left + side - 1
    upper = round(center_y - side / 2)
    lower = upper + side - 1
    if left < 0:
        left, right = 0, side - 1
    if right >= image_width:
        left, right = image_width - side, image_width - 1
    if upper < 0:
        upper, lower = 0, side - 1
    if lower >= image_height:
        upper, lower = image_height - side, image_height - 1
    return left, upper, right, lower


def crop_box_of(scaled: Box) -> np.ndarray:
    """The (x, y, w, h) square the anchors cut from a scaled box: ``right - left`` pixels wide."""
    left, upper, right, lower = scaled
    return np.array([left, upper, right - left, lower - upper], dtype=np.float32)


def inclusive_area(box: Box) -> float:
    left, upper, right, lower = box
    return max(right - left + 1, 0) * max(lower - upper + 1, 0)


def overlap_fraction(scaled: Box, other: Box) -> float:
    """Area of ``scaled`` ∩ ``other`` over the area of ``scaled``, in inclusive pixel counts."""
    shared = (max(scaled[0], other[0]), max(scaled[1], other[1]), min(scaled[2], other[2]), min(scaled[3], other[3]))
    return inclusive_area(shared) / inclusive_area(scaled)


def hand_crop_box(keypoints: np.ndarray, image_width: int, image_height: int) -> np.ndarray:
    """The crop the anchors feed the network for a hand in a whole image (RHD, FreiHAND)."""
    return crop_box_of(scaled_square_box(keypoint_box(keypoints), image_width, image_height))

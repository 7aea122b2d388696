"""The hand body plan's pose: a hand posed in 3D from a domain's pose distribution and seen by an
orthographic camera (``placement`` then puts it in the image).

The hand's own frame: x across the palm towards the thumb, y from the wrist towards the fingertips,
z out of the palm. Each finger is three segments chained from its MCP joint (the thumb's from its
CMC joint, keypoint ``thumb_mcp`` as in the anchors' order): the first segment leaves the palm's
plane at the fanned-out abduction angle, and each joint's flexion turns the rest of the finger
towards the palm's side (+z), so a curled finger's tip comes back over the palm. The hand is then
turned about its long axis (yaw; the back of the hand faces the camera half of the time), tilted
(pitch) and mirrored half of the time (a left hand). Image y points down; a point's depth is its
distance towards the camera, so a flexed finger is drawn over the palm when the palm faces the
camera and behind it when the back does. Every keypoint stays labeled wherever it is hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from posealign.benchmark.draws import Draws
from posealign.benchmark.hand_domains import HandStyle
from posealign.keypoints import HAND21

FINGERS = ("thumb", "index", "middle", "ring", "little")
JOINTS = ("mcp", "pip", "dip", "tip")

# The unposed right hand in figure units (wrist to the open middle fingertip = 1): each finger's base
# joint (x, y), its angle from +y towards the thumb, its three segment lengths and its radius.
_BASE = {
    "thumb": (0.11, 0.09),
    "index": (0.15, 0.50),
    "middle": (0.05, 0.53),
    "ring": (-0.05, 0.51),
    "little": (-0.14, 0.46),
}
_ANGLE = {"thumb": 40.0, "index": 3.0, "middle": 0.0, "ring": -3.0, "little": -8.0}
_FAN = {"thumb": 0.0, "index": 1.0, "middle": 0.0, "ring": -1.0, "little": -2.0}  # x spread_deg
_SEGMENTS = {
    "thumb": (0.17, 0.14, 0.11),
    "index": (0.20, 0.12, 0.10),
    "middle": (0.21, 0.13, 0.10),
    "ring": (0.19, 0.12, 0.10),
    "little": (0.15, 0.10, 0.09),
}
_RADII = {"thumb": 0.05, "index": 0.043, "middle": 0.044, "ring": 0.041, "little": 0.035}
# The palm as capsules between named points of its plane (z = 0), radius 0.07 each: a fan from the
# wrist's edge to each MCP, the knuckles' bar and the thenar pad, filled by a bar across the middle.
PALM_POINTS = {
    "wrist_radial": (0.11, 0.03),
    "wrist_ulnar": (-0.11, 0.03),
    "wrist_mid_radial": (0.04, 0.05),
    "wrist_mid_ulnar": (-0.04, 0.05),
    "palm_radial": (0.09, 0.25),
    "palm_ulnar": (-0.1, 0.25),
}
PALM_RADIUS, FOREARM_LENGTH, FOREARM_RADIUS = 0.07, 0.7, 0.12


@dataclass
class HandPose:
    """points: figure units in image orientation (x right, y down), the 21 keypoints by Hand21 name
    plus the palm's outline points and ``elbow`` (the forearm's far end). depth: the same names, larger
    = nearer the camera. radii: per finger, figure units (the palm's and forearm's are constants)."""

    points: dict[str, complex]
    depth: dict[str, float]
    radii: dict[str, float]

    def hand21_keypoints(self) -> list[complex]:
        return [self.points[name] for name in HAND21.names]


def _rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Turn about the hand's long axis (y), then tilt about x."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    about_y = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    about_x = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    return about_x @ about_y


def _chain(base: np.ndarray, first: np.ndarray, bend: np.ndarray, lengths, flexions) -> list[np.ndarray]:
    """The finger's four joints from its base: each segment turns from ``first`` towards ``bend``
    (a unit vector orthogonal to it) by the flexions so far."""
    joints, angle = [base], 0.0
    for length, flexion in zip(lengths, flexions, strict=True):
        angle += math.radians(flexion)
        joints.append(joints[-1] + length * (math.cos(angle) * first + math.sin(angle) * bend))
    return joints


def sample_pose(draws: Draws, style: HandStyle) -> HandPose:
    """A hand of length ~1 (wrist to the open middle fingertip) with the wrist at 0, posed and projected."""
    jitter = style.proportion_jitter
    palm, fingers, width = (draws.uniform(1 - jitter, 1 + jitter) for _ in range(3))
    limb = width * draws.between(style.limb_width)
    spread = draws.between(style.spread_deg)
    x_axis, z_axis = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    points3d: dict[str, np.ndarray] = {"wrist": np.zeros(3)}
    for name, (x, y) in PALM_POINTS.items():
        points3d[name] = np.array([x * width, y * palm, 0.0])
    points3d["elbow"] = np.array([0.0, -FOREARM_LENGTH, -0.05])

    for finger in FINGERS:
        x, y = _BASE[finger]
        base = np.array([x * width, y * palm, 0.0])
        angle = math.radians(_ANGLE[finger] + _FAN[finger] * spread + draws.normal(2.0))
        along = np.array([math.sin(angle), math.cos(angle), 0.0])
        if finger == "thumb":
            # Opposition turns the thumb out of the palm's plane towards the palm's side; it then
            # flexes across the palm (towards -x and +z).
            opposition = math.radians(draws.between(style.thumb_opposition_deg))
            first = math.cos(opposition) * along + math.sin(opposition) * z_axis
            across = -x_axis + 0.6 * z_axis
            flexions = [draws.between(style.thumb_flex_deg) * share for share in (0.4, 1.0, 1.0)]
        else:
            first, across = along, z_axis
            flex_range = style.curl_flex_deg if draws.chance(style.curl_prob) else style.finger_flex_deg
            flexions = [draws.between(flex_range) for _ in range(3)]
        bend = across - (across @ first) * first
        bend /= np.linalg.norm(bend)
        lengths = [length * fingers for length in _SEGMENTS[finger]]
        for joint, point in zip(JOINTS, _chain(base, first, bend, lengths, flexions), strict=True):
            points3d[f"{finger}_{joint}"] = point

    yaw = draws.between(style.yaw_deg) * draws.sign() + (180.0 if draws.chance(style.back_prob) else 0.0)
    pitch = draws.between(style.pitch_deg) * draws.sign()
    rotation = _rotation(yaw, pitch)
    mirror = -1.0 if draws.chance(0.5) else 1.0  # a left hand
    centre = np.array([0.0, 0.5, 0.0])  # turn about the palm's middle, not the wrist
    points, depth = {}, {}
    for name, point in points3d.items():
        x, y, z = rotation @ (point - centre) + centre
        points[name], depth[name] = complex(mirror * x, -y), float(z)
    radii = {finger: _RADII[finger] * limb for finger in FINGERS}
    radii.update(palm=PALM_RADIUS * width, forearm=FOREARM_RADIUS * width)
    return HandPose(points, depth, radii)

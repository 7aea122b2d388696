"""The quadruped body plan's pose: a four-legged animal seen from the side, drawn from a domain's pose
distribution (``placement`` then puts it in the image).

The animal is posed in 3D: a sagittal point ``x + iy`` (x towards the head, y up) and a lateral
offset ``c`` (towards the camera). It is turned about the vertical by a yaw (3/4 views shorten the
body and separate the near legs from the far ones), seen by an orthographic camera a little above it
(the far legs show higher) and mirrored half of the time to face left. Facing right (image +x) the
animal shows its right side, facing left its left side: that decides the left/right names of the
near and far keypoints. The far eye is usually hidden by the head and stays labeled, as in LSP.

Animal14's names, on each leg: the elbow is where the leg leaves the body (elbow in front, stifle
behind), the knee the middle joint (carpus in front, hock behind), the hoof the foot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from posealign.benchmark.draws import Draws
from posealign.benchmark.quadruped_domains import QuadrupedStyle
from posealign.keypoints import ANIMAL14

LEGS = ("near_front", "far_front", "near_back", "far_back")
_TROT = {"near_front": 0.0, "far_front": math.pi, "near_back": math.pi, "far_back": 0.0}  # diagonal pairs together

# The unposed figure in figure units (nose to rump = 1).
_TORSO_LENGTH = 0.5  # hip point to shoulder point, on the torso's axis
_LENGTHS = {"upper_leg": 0.19, "lower_leg": 0.2, "neck": 0.22, "head": 0.2, "tail": 0.24, "ear": 0.07}
_RADII = {
    "chest": 0.12, "rump": 0.11, "neck": 0.055, "head": 0.05, "muzzle": 0.03, "ear": 0.018, "eye": 0.016,
    "shoulder": 0.075, "haunch": 0.085, "upper_leg": 0.044, "lower_leg": 0.034, "hoof": 0.034, "tail": 0.02,
}  # fmt: skip
_LEG_HALF_SPREAD, _EYE_HALF_SPREAD, _EAR_HALF_SPREAD = 0.07, 0.035, 0.03  # lateral offsets c


@dataclass
class QuadrupedPose:
    """points: figure units in image orientation (x right, y down), named ``near_eye``, ``far_front_knee``, ...
    radii: figure units. near_side: the animal's side towards the camera, "right" or "left"."""

    points: dict[str, complex]
    radii: dict[str, float]
    near_side: str

    def animal14_keypoints(self) -> list[complex]:
        """The 14 Animal14 keypoints in the set's order: anatomical left/right become near/far."""
        keypoints = []
        for name in ANIMAL14.names:
            side, part = name.split("_", 1)
            keypoints.append(self.points[f"{'near' if side == self.near_side else 'far'}_{part}"])
        return keypoints


def _direction(angle_deg: float) -> complex:
    """Unit vector in the sagittal plane (x forward, y up) at an angle from straight down, towards the head."""
    angle = math.radians(angle_deg)
    return complex(math.sin(angle), -math.cos(angle))


def _leg_angles(draws: Draws, style: QuadrupedStyle, sitting: bool, lying: bool) -> dict[str, tuple[float, float]]:
    """(upper, lower) segment angles of each leg from straight down, positive towards the head."""
    angles = {}
    if sitting:  # front legs straight, hind legs folded: hock on the ground behind, foot forward
        for leg in LEGS:
            if leg.endswith("front"):
                upper = draws.uniform(-5, 15)
                angles[leg] = (upper, upper - draws.uniform(0, 15))
            else:
                angles[leg] = (draws.uniform(-115, -85), draws.uniform(70, 100))
        return angles
    if lying:  # legs folded under the body, or the front legs stretched forward
        stretched = draws.chance(0.5)
        for leg in LEGS:
            if leg.endswith("front") and stretched:
                upper = draws.uniform(60, 90)
                angles[leg] = (upper, upper + draws.uniform(-10, 15))
            else:
                upper = draws.uniform(50, 95)
                angles[leg] = (upper, upper - draws.uniform(135, 165))
        return angles
    # Standing or moving: each leg swings about straight down, the lower leg folds while it swings forward.
    phase, swing, flex = (
        draws.uniform(0, 2 * math.pi),
        draws.between(style.gait_swing_deg),
        draws.between(style.gait_flex_deg),
    )
    for leg in LEGS:
        leg_phase = phase + _TROT[leg] + draws.uniform(-0.6, 0.6)
        upper, fold = swing * math.sin(leg_phase), flex * max(0.0, math.cos(leg_phase))
        if leg.endswith("front"):
            angles[leg] = (upper, upper - fold)
        else:  # the hind leg's thigh slants back and its cannon forward when it stands
            angles[leg] = (upper - 15, upper + 10 - fold)
    return angles


def sample_pose(draws: Draws, style: QuadrupedStyle) -> QuadrupedPose:
    """A quadruped of length ~1 (nose to rump) with the torso's centre at 0, and its radii."""
    jitter = style.proportion_jitter
    body, legs, neck, head, width = (draws.uniform(1 - jitter, 1 + jitter) for _ in range(5))
    legs *= draws.between(style.leg_length)
    limb = width * draws.between(style.limb_width)
    radii = {name: radius * width for name, radius in _RADII.items()}
    for name in ("upper_leg", "lower_leg", "hoof", "tail", "neck"):
        radii[name] = _RADII[name] * limb

    posture = draws.uniform()
    sitting = posture < style.sit_prob
    lying = not sitting and posture < style.sit_prob + style.lie_prob
    pitch = draws.normal(style.torso_pitch_deg) + (draws.uniform(25, 45) if sitting else 0.0)
    axis = complex(math.cos(math.radians(pitch)), math.sin(math.radians(pitch)))  # towards the head
    up, down = axis * 1j, axis * -1j

    sagittal: dict[str, complex] = {}
    lateral: dict[str, float] = {}

    def put(name: str, point: complex, c: float = 0.0) -> complex:
        sagittal[name], lateral[name] = point, c
        return point

    shoulder = put("shoulder", axis * _TORSO_LENGTH / 2 * body)
    hip = put("hip", -axis * _TORSO_LENGTH / 2 * body)
    # The torso's outline, so that placement keeps all of it in the image.
    put("withers", shoulder + up * radii["chest"])
    put("croup", hip + up * radii["rump"])
    put("brisket", shoulder + axis * radii["chest"] * 0.7 + down * radii["chest"] * 0.7)
    put("buttock", hip - axis * radii["rump"])

    for leg, (upper, lower) in _leg_angles(draws, style, sitting, lying).items():
        c = _LEG_HALF_SPREAD * width * (1 if leg.startswith("near") else -1)
        if leg.endswith("front"):
            put(f"{leg}_top", shoulder + up * 0.3 * radii["chest"] - axis * 0.02, c)
            elbow = put(f"{leg}_elbow", shoulder - axis * 0.05 + down * 0.85 * radii["chest"], c)
        else:
            put(f"{leg}_top", hip + up * 0.3 * radii["rump"] + axis * 0.02, c)
            elbow = put(f"{leg}_elbow", hip + axis * 0.05 + down * 0.85 * radii["rump"], c)
        knee = put(f"{leg}_knee", elbow + _LENGTHS["upper_leg"] * legs * _direction(upper), c)
        put(f"{leg}_hoof", knee + _LENGTHS["lower_leg"] * legs * _direction(lower), c)

    neck_base = put("neck_base", shoulder + axis * 0.03 + up * 0.45 * radii["chest"])
    raise_angle = math.radians(draws.between(style.neck_raise_deg))
    poll = put("poll", neck_base + _LENGTHS["neck"] * neck * complex(math.cos(raise_angle), math.sin(raise_angle)))
    head_angle = math.degrees(raise_angle) - 100 + draws.normal(style.head_tilt_deg)  # from forward, up positive
    head_axis = complex(math.cos(math.radians(head_angle)), math.sin(math.radians(head_angle)))
    put("muzzle", poll + _LENGTHS["head"] * head * head_axis)
    eye = poll + 0.3 * _LENGTHS["head"] * head * head_axis + head_axis * 1j * 0.4 * radii["head"]
    put("near_eye", eye, _EYE_HALF_SPREAD * width)
    put("far_eye", eye, -_EYE_HALF_SPREAD * width)
    ear_axis = head_axis * complex(math.cos(math.radians(130)), math.sin(math.radians(130)))
    put("near_ear", poll + _LENGTHS["ear"] * head * ear_axis, _EAR_HALF_SPREAD * width)
    put("far_ear", poll + _LENGTHS["ear"] * head * ear_axis, -_EAR_HALF_SPREAD * width)

    tail_root = put("tail_root", hip - axis * 0.85 * radii["rump"] + up * 0.35 * radii["rump"])
    tail_angle = draws.between(style.tail_angle_deg)
    tail_mid = put("tail_mid", tail_root + 0.5 * _LENGTHS["tail"] * _direction(-tail_angle))
    put("tail_tip", tail_mid + 0.5 * _LENGTHS["tail"] * _direction(-tail_angle - draws.uniform(-35, 35)))

    # The camera: yaw about the vertical, elevation above, then mirrored to face left half of the time.
    yaw = math.radians(draws.sign() * draws.between(style.yaw_deg))
    elevation = math.radians(draws.between(style.elevation_deg))
    facing_left = draws.chance(0.5)
    points = {}
    for name, point in sagittal.items():
        c = lateral[name]
        x = point.real * math.cos(yaw) - c * math.sin(yaw)
        towards_camera = point.real * math.sin(yaw) + c * math.cos(yaw)
        y = -point.imag * math.cos(elevation) + towards_camera * math.sin(elevation)  # image y points down
        points[name] = complex(-x if facing_left else x, y)
    return QuadrupedPose(points, radii, "left" if facing_left else "right")

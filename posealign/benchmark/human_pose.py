"""The human body plan's pose: a Body16 skeleton of height ~1 drawn from a domain's pose distribution
(``placement`` then puts it in the image).

Figures face the camera: the person's right side is on the image's left.
"""

from __future__ import annotations

from posealign.benchmark.domains import HumanStyle
from posealign.benchmark.draws import Draws
from posealign.benchmark.geometry import unit_direction

# Body16 indices (MPII order).
R_ANKLE, R_KNEE, R_HIP, L_HIP, L_KNEE, L_ANKLE, PELVIS, THORAX, NECK, HEAD_TOP = range(10)
R_WRIST, R_ELBOW, R_SHOULDER, L_SHOULDER, L_ELBOW, L_WRIST = range(10, 16)

# The unposed figure, in units of its height (ankle to head top = 1).
_LENGTHS = {"torso": 0.28, "neck": 0.08, "head": 0.15, "upper_arm": 0.17, "forearm": 0.15, "thigh": 0.24, "shin": 0.23}
_RADII = {"upper_arm": 0.032, "forearm": 0.026, "thigh": 0.048, "shin": 0.036, "neck": 0.03, "hand": 0.03}
_HEAD_RADIUS, _SHOULDER_HALF_WIDTH, _HIP_HALF_WIDTH = 0.068, 0.105, 0.075


def sample_pose(draws: Draws, style: HumanStyle) -> tuple[list[complex], dict[str, float]]:
    """Joints (16, as x + iy) of a figure of height ~1 with the pelvis at 0, and its radii (same units)."""
    jitter = style.proportion_jitter
    torso, arm, leg, head, width = (draws.uniform(1 - jitter, 1 + jitter) for _ in range(5))

    def length(segment: str, factor: float) -> float:
        return _LENGTHS[segment] * factor * draws.uniform(1 - style.foreshortening, 1)

    joints = [0j] * 16
    down = draws.normal(style.torso_lean_deg)
    up = down + 180
    joints[THORAX] = joints[PELVIS] + length("torso", torso) * unit_direction(up)
    neck_angle = up + draws.normal(style.head_tilt_deg)
    joints[NECK] = joints[THORAX] + length("neck", torso) * unit_direction(neck_angle)
    head_angle = neck_angle + draws.normal(style.head_tilt_deg)
    joints[HEAD_TOP] = joints[NECK] + _LENGTHS["head"] * head * unit_direction(head_angle)

    # side = -1 is the person's right, drawn on the image's left: the figure faces the camera.
    for side, (shoulder, elbow, wrist) in ((-1, (R_SHOULDER, R_ELBOW, R_WRIST)), (1, (L_SHOULDER, L_ELBOW, L_WRIST))):
        outwards = unit_direction(down + side * 90)
        joints[shoulder] = joints[THORAX] + outwards * _SHOULDER_HALF_WIDTH * width + 0.02 * unit_direction(down)
        bend, flex, pick = draws.sign(), draws.between(style.elbow_flex_deg), draws.uniform()
        if pick < style.arm_cross_prob:  # folded in front of the torso
            abduction, bend, flex = draws.uniform(-45, -10), -1.0, draws.uniform(50, 130)
        elif pick < style.arm_cross_prob + style.arm_raised_prob:
            abduction = draws.uniform(100, 175)
        else:
            abduction = draws.between(style.arm_abduction_deg)
        upper = down + side * abduction
        joints[elbow] = joints[shoulder] + length("upper_arm", arm) * unit_direction(upper)
        joints[wrist] = joints[elbow] + length("forearm", arm) * unit_direction(upper + side * bend * flex)

    for side, (hip, knee, ankle) in ((-1, (R_HIP, R_KNEE, R_ANKLE)), (1, (L_HIP, L_KNEE, L_ANKLE))):
        joints[hip] = (
            joints[PELVIS] + unit_direction(down + side * 90) * _HIP_HALF_WIDTH * width + 0.03 * unit_direction(down)
        )
        thigh = down + side * draws.between(style.leg_abduction_deg)
        joints[knee] = joints[hip] + length("thigh", leg) * unit_direction(thigh)
        knee_bend = draws.sign() * draws.between(style.knee_flex_deg)
        joints[ankle] = joints[knee] + length("shin", leg) * unit_direction(thigh + side * knee_bend)

    limb_width = width * draws.between(style.limb_width)
    radii = {name: radius * limb_width for name, radius in _RADII.items()}
    radii.update(head=_HEAD_RADIUS * head, shoulder=_SHOULDER_HALF_WIDTH * width, hip=_HIP_HALF_WIDTH * width)
    return joints, radii

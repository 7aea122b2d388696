"""The quadruped benchmark's two domains as data: :class:`QuadrupedStyle` adds the four-legged
figure's pose knobs to the shared :class:`~posealign.benchmark.domains.DomainStyle`.

``QUADRUPED_SOURCE_STYLE`` is clean renders: a flat vivid hue per body part on a plain background,
side views of animals standing or walking. ``QUADRUPED_TARGET_STYLE`` is what makes photos of
animals hard for a model trained on renders: fur-coloured coats with grain, stripes and shading,
textured and cluttered backgrounds with leg-like distractor strokes, blur, noise and JPEG, uneven
lighting, and a shifted pose distribution (more in-plane rotation and 3/4 views, other scales and
leg lengths, faster gaits, grazing heads, sitting and lying animals).
"""

from __future__ import annotations

from dataclasses import dataclass

from posealign.benchmark.domains import CLEAN_RENDER, CLUTTERED_PHOTO, DomainStyle


@dataclass(frozen=True)
class QuadrupedStyle(DomainStyle):
    """A quadruped benchmark domain: the shared knobs plus the Animal14 figure's pose distribution.

    A figure unit is the standing figure's nose-to-rump length (tail tip to nose is about 1.2 units,
    ground to ears about 0.85). ``palette`` is "saturated" or "fur" (one coat colour; darker, white
    or coat-coloured lower legs; dark hooves and eyes). Angles of legs are from straight down,
    positive towards the head.
    """

    figure_length: tuple[float, float]  # pixels per figure unit, fraction of the image side
    yaw_deg: tuple[float, float]  # |turn towards or away from the camera| (3/4 views foreshorten the body)
    elevation_deg: tuple[float, float]  # camera above the animal: the far legs show higher than the near ones
    torso_pitch_deg: float  # torso tilt ~ N(0, sd), front up positive
    neck_raise_deg: tuple[float, float]  # neck above the horizontal; negative = grazing
    head_tilt_deg: float  # head angle to its usual right angle with the neck ~ N(0, sd)
    leg_length: tuple[float, float]  # per-figure multiplier of the legs' length (breeds: dachshund to deer)
    gait_swing_deg: tuple[float, float]  # amplitude of each leg's swing about straight down
    gait_flex_deg: tuple[float, float]  # largest fold of the lower leg while the leg swings forward
    sit_prob: float  # chance of sitting: torso raised, hind legs folded on the ground
    lie_prob: float  # chance of lying: every leg folded under the body or stretched forward
    tail_angle_deg: tuple[float, float]  # tail from hanging (0) through straight back (90) to raised


QUADRUPED_SOURCE_STYLE = QuadrupedStyle(
    name="source",
    figure_length=(0.62, 0.72),
    position_slack=0.0,
    rotation_deg=5.0,
    proportion_jitter=0.06,
    limb_width=(1.1, 1.3),
    yaw_deg=(0.0, 10.0),
    elevation_deg=(5.0, 15.0),
    torso_pitch_deg=3.0,
    neck_raise_deg=(30.0, 60.0),
    head_tilt_deg=8.0,
    leg_length=(0.9, 1.1),
    gait_swing_deg=(0.0, 15.0),
    gait_flex_deg=(0.0, 30.0),
    sit_prob=0.0,
    lie_prob=0.0,
    tail_angle_deg=(20.0, 60.0),
    **CLEAN_RENDER,
)

QUADRUPED_TARGET_STYLE = QuadrupedStyle(
    name="target",
    figure_length=(0.58, 0.85),
    position_slack=0.03,
    rotation_deg=20.0,
    proportion_jitter=0.1,
    limb_width=(1.0, 1.4),
    yaw_deg=(0.0, 35.0),
    elevation_deg=(0.0, 30.0),
    torso_pitch_deg=8.0,
    neck_raise_deg=(-35.0, 75.0),
    head_tilt_deg=15.0,
    leg_length=(0.8, 1.25),
    gait_swing_deg=(5.0, 40.0),
    gait_flex_deg=(10.0, 100.0),
    sit_prob=0.08,
    lie_prob=0.08,
    tail_angle_deg=(0.0, 150.0),
    palette="fur",
    stripe_prob=0.25,
    stripe_amplitude=(0.15, 0.35),
    fabric_noise=(0.08, 0.25),
    limb_shading=(0.2, 0.5),
    **CLUTTERED_PHOTO,
)

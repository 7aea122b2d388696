"""The domains of the built-in benchmarks as data: every difficulty knob of one domain is a field of
a style. :class:`DomainStyle` holds the knobs every body plan shares (placement, appearance,
background, clutter, camera); :class:`HumanStyle` adds the human figure's pose knobs, and
``SOURCE_STYLE`` (clean renders) and ``TARGET_STYLE`` (photo-like) are the human benchmark's two
domains. The quadruped's are in :mod:`posealign.benchmark.quadruped_domains`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DomainStyle:
    """The knobs of one domain that do not depend on the body plan. ``(lo, hi)`` pairs are sampled
    uniformly per figure/image.

    Angles are in degrees, lengths in units of the figure (its height for a human, its body length for
    a quadruped) unless said otherwise, intensities in [0, 1]. To widen the gap, move a target knob
    away from the source value; to close it, copy the source value
    (``dataclasses.replace(TARGET_STYLE, blur_sigma=(0.0, 0.0))``). Passing changed styles to
    :func:`generate_benchmark` regenerates the benchmark (the styles are part of benchmark.json).

    Knobs in pixels (``blur_sigma``, clutter line widths) do not scale with ``image_size``; the others do.

    Two kinds of knob, for calibrating what each level of alignment can fix: appearance (palette,
    textures, shading, background texture, lighting, tone, blur, noise, JPEG) changes image
    statistics that image-level style transfer (AdaIN) can match; structure (clutter, distractor
    limbs, occluder, every pose knob) cannot be matched by restyling a source image.
    """

    name: str
    # --- placement and proportions ---
    position_slack: float  # how far the figure's extent may stick out of the image, fraction of side
    rotation_deg: float  # in-plane rotation of the whole figure ~ U(-r, r)
    proportion_jitter: float  # per-figure length factors (torso, limbs, widths) x U(1 - j, 1 + j)
    limb_width: tuple[float, float]  # per-figure multiplier of every limb radius (and of distractor strokes)
    # --- appearance of the figure ---
    palette: str  # "saturated": a vivid flat hue per body part; else the body plan's natural colours
    stripe_prob: float  # chance per garment (or coat) of stripes
    stripe_amplitude: tuple[float, float]  # relative colour modulation of stripes
    fabric_noise: tuple[float, float]  # relative colour modulation by a grainy texture on every limb
    limb_shading: tuple[float, float]  # cylinder shading strength across each limb (0 = flat)
    # --- background and clutter ---
    background: str  # "plain": uniform or two-colour gradient; "textured": low-frequency colour noise + grain
    background_grain: float  # amplitude of fine background texture ("textured" only)
    clutter_blobs: tuple[int, int]  # number of random ellipses behind the figure
    clutter_lines: tuple[int, int]  # number of thin straight lines behind the figure
    distractor_limbs: tuple[int, int]  # limb-like strokes in the figure's tones that are not the figure
    occluder_prob: float  # chance of one object in front of the figure
    # --- lighting and camera, applied in this order ---
    blur_sigma: tuple[float, float]  # Gaussian blur sd, pixels
    illumination_gradient: float  # max relative brightness change across the image (a linear ramp)
    noise_std: tuple[float, float]  # sensor noise sd (uniformly distributed noise, per pixel and channel)
    gamma: tuple[float, float]  # tone curve: intensities raised to this power, ...
    contrast: tuple[float, float]  # ... then scaled about their mean, ...
    brightness: tuple[float, float]  # ... then shifted by this
    color_cast: float  # per-channel gain ~ U(1 - c, 1 + c) (white balance)
    jpeg_prob: float  # chance of a JPEG round trip
    jpeg_quality: tuple[int, int]


@dataclass(frozen=True)
class HumanStyle(DomainStyle):
    """A human benchmark domain: the shared knobs plus the Body16 figure's pose distribution.
    ``palette`` is "saturated" or "clothing" (skin, shirt, trousers, shoes; left = right)."""

    figure_height: tuple[float, float]  # head-top-to-ankle length of the unposed figure, fraction of image side
    torso_lean_deg: float  # torso lean ~ N(0, sd)
    head_tilt_deg: float  # neck and head tilt ~ N(0, sd)
    arm_abduction_deg: tuple[float, float]  # upper arm from hanging down (0) outwards; 90 = horizontal
    arm_raised_prob: float  # chance per arm of a raised arm instead: abduction U(100, 175)
    arm_cross_prob: float  # chance per arm of crossing in front of the torso (abduction inwards, elbow folded)
    elbow_flex_deg: tuple[float, float]  # forearm angle to the upper arm, bent up/out or in at random
    leg_abduction_deg: tuple[float, float]  # thigh from straight down outwards (stance width)
    knee_flex_deg: tuple[float, float]  # shin angle to the thigh
    foreshortening: float  # each segment's drawn length x U(1 - f, 1): out-of-plane rotation
    arm_behind_torso_prob: float  # chance per arm of being drawn behind the torso (hides a crossing arm)


# The appearance both benchmarks' source domains share: flat vivid colours, no texture, a plain
# background without clutter, an ideal camera. Spread into each source style.
CLEAN_RENDER = dict(
    palette="saturated",
    stripe_prob=0.0,
    stripe_amplitude=(0.0, 0.0),
    fabric_noise=(0.0, 0.0),
    limb_shading=(0.0, 0.0),
    background="plain",
    background_grain=0.0,
    clutter_blobs=(0, 0),
    clutter_lines=(0, 0),
    distractor_limbs=(0, 0),
    occluder_prob=0.0,
    blur_sigma=(0.0, 0.0),
    illumination_gradient=0.0,
    noise_std=(0.0, 0.0),
    gamma=(1.0, 1.0),
    contrast=(1.0, 1.0),
    brightness=(0.0, 0.0),
    color_cast=0.0,
    jpeg_prob=0.0,
    jpeg_quality=(95, 95),
)

# The scene and camera both benchmarks' target domains share: a textured, cluttered background with
# limb-like distractors and occluders, uneven light, blur, noise, tone and colour shifts and JPEG.
# Spread into each target style after the figure's own texture.
CLUTTERED_PHOTO = dict(
    background="textured",
    background_grain=0.08,
    clutter_blobs=(0, 3),
    clutter_lines=(0, 1),
    distractor_limbs=(0, 1),
    occluder_prob=0.05,
    blur_sigma=(0.0, 0.5),
    illumination_gradient=0.4,
    noise_std=(0.01, 0.03),
    gamma=(0.85, 1.2),
    contrast=(0.8, 1.05),
    brightness=(-0.08, 0.05),
    color_cast=0.12,
    jpeg_prob=0.3,
    jpeg_quality=(50, 90),
)


SOURCE_STYLE = HumanStyle(
    name="source",
    figure_height=(0.70, 0.85),
    position_slack=0.0,
    rotation_deg=8.0,
    torso_lean_deg=4.0,
    head_tilt_deg=6.0,
    arm_abduction_deg=(10.0, 70.0),
    arm_raised_prob=0.05,
    arm_cross_prob=0.0,
    elbow_flex_deg=(0.0, 70.0),
    leg_abduction_deg=(2.0, 18.0),
    knee_flex_deg=(0.0, 20.0),
    foreshortening=0.1,
    proportion_jitter=0.06,
    limb_width=(1.1, 1.3),
    arm_behind_torso_prob=0.0,
    **CLEAN_RENDER,
)

TARGET_STYLE = HumanStyle(
    name="target",
    figure_height=(0.65, 0.9),
    position_slack=0.03,
    rotation_deg=25.0,
    torso_lean_deg=8.0,
    head_tilt_deg=10.0,
    arm_abduction_deg=(0.0, 100.0),
    arm_raised_prob=0.25,
    arm_cross_prob=0.15,
    elbow_flex_deg=(0.0, 120.0),
    leg_abduction_deg=(0.0, 35.0),
    knee_flex_deg=(0.0, 60.0),
    foreshortening=0.25,
    proportion_jitter=0.1,
    limb_width=(1.0, 1.4),
    arm_behind_torso_prob=0.1,
    palette="clothing",
    stripe_prob=0.3,
    stripe_amplitude=(0.15, 0.35),
    fabric_noise=(0.05, 0.2),
    limb_shading=(0.2, 0.5),
    **CLUTTERED_PHOTO,
)

STYLES = {"source": SOURCE_STYLE, "target": TARGET_STYLE}  # the human benchmark's domains by name

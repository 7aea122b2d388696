"""The built-in benchmark: procedurally drawn articulated human figures (Body16) in two domains.

``source`` is clean renders: flat saturated limbs on a plain background, upright moderate poses.
``target`` is what makes real photos hard for a model trained on renders: clothing- and skin-toned
textured limbs with shading, uneven lighting, cluttered backgrounds with limb-like distractor
strokes, blur, sensor noise and JPEG, arms crossing the torso, and a shifted pose distribution
(raised arms, wide stances, in-plane rotation, other scales). Part of the gap is appearance
statistics (what AdaIN-style image alignment can close), part is clutter and pose shift.
Every knob is a field of :class:`DomainStyle`; ``SOURCE_STYLE`` and ``TARGET_STYLE`` are the domains.

Layout written by :func:`generate_benchmark` (loadable with
``load_coco(root, split, keypoint_set="body16", crop="image")``)::

    root/images/{source_train,source_test,target_train,target_test}/{index:06d}.png
    root/annotations/{split}.json      COCO keypoints, visibility 2 = labeled, 0 = outside the image
    root/benchmark.json                generator version and parameters, written last

Conventions: image coordinates (x right, y down) with pixel centres at integers, so a keypoint is
inside the image when ``0 <= x, y <= image_size - 1``. A keypoint hidden behind another body part
stays labeled (visibility 2), as in LSP; only keypoints outside the image get visibility 0.
Figures face the camera: the person's right side is on the image's left.
Each image draws from its own ``default_rng((seed, split, index))``: the files do not depend on
``workers`` and a rerun writes byte-identical PNGs.

Rendering is numpy only: each limb is a tapered capsule, rasterised as anti-aliased fragments and
composited in depth order (see :func:`_rasterize`); about 1-2 ms per 64 x 64 image on one core.
:func:`render_example` draws a single image without writing anything.
"""

from __future__ import annotations

import colorsys
import io
import json
import math
import shutil
import struct
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import correlate1d

from posealign.data.coco import write_coco
from posealign.data.records import PoseRecord, square_box_around
from posealign.keypoints import BODY16

GENERATOR_VERSION = 1
SPLITS = ("source_train", "source_test", "target_train", "target_test")
DEFAULT_SIZES = {"source_train": 4000, "source_test": 500, "target_train": 4000, "target_test": 500}


@dataclass(frozen=True)
class DomainStyle:
    """Every difficulty knob of one domain. ``(lo, hi)`` pairs are sampled uniformly per figure/image.

    Angles are in degrees, lengths in units of the figure's height unless said otherwise, intensities
    in [0, 1]. To widen the gap, move a target knob away from the source value; to close it, copy the
    source value (``dataclasses.replace(TARGET_STYLE, blur_sigma=(0.0, 0.0))``). Passing changed styles
    to :func:`generate_benchmark` regenerates the benchmark (the styles are part of benchmark.json).

    Knobs in pixels (``blur_sigma``, clutter line widths) do not scale with ``image_size``; the others do.

    Two kinds of knob, for calibrating what each level of alignment can fix: appearance (palette,
    textures, shading, background texture, lighting, tone, blur, noise, JPEG) changes image
    statistics that image-level style transfer (AdaIN) can match; structure (clutter, distractor
    limbs, occluder, every pose knob) cannot be matched by restyling a source image.
    """

    name: str
    # --- pose distribution ---
    figure_height: tuple[float, float]  # head-top-to-ankle length of the unposed figure, fraction of image side
    position_slack: float  # how far the figure's extent may stick out of the image, fraction of side
    rotation_deg: float  # in-plane rotation of the whole figure ~ U(-r, r)
    torso_lean_deg: float  # torso lean ~ N(0, sd)
    head_tilt_deg: float  # neck and head tilt ~ N(0, sd)
    arm_abduction_deg: tuple[float, float]  # upper arm from hanging down (0) outwards; 90 = horizontal
    arm_raised_prob: float  # chance per arm of a raised arm instead: abduction U(100, 175)
    arm_cross_prob: float  # chance per arm of crossing in front of the torso (abduction inwards, elbow folded)
    elbow_flex_deg: tuple[float, float]  # forearm angle to the upper arm, bent up/out or in at random
    leg_abduction_deg: tuple[float, float]  # thigh from straight down outwards (stance width)
    knee_flex_deg: tuple[float, float]  # shin angle to the thigh
    foreshortening: float  # each segment's drawn length x U(1 - f, 1): out-of-plane rotation
    proportion_jitter: float  # per-figure length factors (torso, arms, legs, widths) x U(1 - j, 1 + j)
    limb_width: tuple[float, float]  # per-figure multiplier of every limb radius
    arm_behind_torso_prob: float  # chance per arm of being drawn behind the torso (hides a crossing arm)
    # --- appearance of the figure ---
    palette: str  # "saturated": a vivid flat hue per body part; "clothing": skin, shirt, trousers, shoes (left = right)
    stripe_prob: float  # chance per garment of stripes
    stripe_amplitude: tuple[float, float]  # relative colour modulation of stripes
    fabric_noise: tuple[float, float]  # relative colour modulation by a grainy texture on every limb
    limb_shading: tuple[float, float]  # cylinder shading strength across each limb (0 = flat)
    # --- background and clutter ---
    background: str  # "plain": uniform or two-colour gradient; "textured": low-frequency colour noise + grain
    background_grain: float  # amplitude of fine background texture ("textured" only)
    clutter_blobs: tuple[int, int]  # number of random ellipses behind the figure
    clutter_lines: tuple[int, int]  # number of thin straight lines behind the figure
    distractor_limbs: tuple[int, int]  # limb-like strokes in skin/clothing colours that are not the figure
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


SOURCE_STYLE = DomainStyle(
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

TARGET_STYLE = DomainStyle(
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

STYLES = {"source": SOURCE_STYLE, "target": TARGET_STYLE}  # by name, for configs and the CLI

# Body16 indices (MPII order).
R_ANKLE, R_KNEE, R_HIP, L_HIP, L_KNEE, L_ANKLE, PELVIS, THORAX, NECK, HEAD_TOP = range(10)
R_WRIST, R_ELBOW, R_SHOULDER, L_SHOULDER, L_ELBOW, L_WRIST = range(10, 16)

# The unposed figure, in units of its height (ankle to head top = 1).
_LENGTHS = {"torso": 0.28, "neck": 0.08, "head": 0.15, "upper_arm": 0.17, "forearm": 0.15, "thigh": 0.24, "shin": 0.23}
_RADII = {"upper_arm": 0.032, "forearm": 0.026, "thigh": 0.048, "shin": 0.036, "neck": 0.03, "hand": 0.03}
_HEAD_RADIUS, _SHOULDER_HALF_WIDTH, _HIP_HALF_WIDTH = 0.068, 0.105, 0.075

# A capsule to paint is one row: a (x, y), b (x, y), radius at a, radius at b, depth (larger = in
# front), colour (r, g, b), texture (stripe amplitude, stripe period in pixels, stripe angle, stripe
# phase, grain amplitude, shading strength), figure flag (1 for the figure's own parts).
_FLAT = (0.0, 1.0, 0.0, 0.0, 0.0, 0.0)
_BATCH = 8  # images rasterised together (the result does not depend on it; small batches stay in cache)


@dataclass
class RenderedFigure:
    """One rendered example.

    image: (S, S, 3) uint8. keypoints: (16, 2) float32 pixels. visible: (16,) bool (inside the image).
    bbox: (4,) x, y, w, h of the painted figure's pixels. figure_alpha: (S, S) float32 coverage by the figure.
    """

    image: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    bbox: np.ndarray
    figure_alpha: np.ndarray


class _Draws:
    """Scalar random numbers for one image, drawn in one block and consumed in order.

    Hundreds of scalar draws per image through ``Generator.uniform`` would cost more than the
    drawing itself; the sequence stays a pure function of the image's generator.
    """

    def __init__(self, rng: np.random.Generator, block: int = 512) -> None:
        self._rng, self._block = rng, block
        self._values: list[float] = []
        self._next = 0

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        if self._next == len(self._values):
            self._values.extend(self._rng.random(self._block).tolist())
        value = self._values[self._next]
        self._next += 1
        return low + (high - low) * value

    def between(self, bounds: tuple[float, float]) -> float:
        return self.uniform(bounds[0], bounds[1])

    def chance(self, probability: float) -> bool:
        return self.uniform() < probability

    def sign(self) -> float:
        return 1.0 if self.uniform() < 0.5 else -1.0

    def integer(self, bounds: tuple[int, int]) -> int:
        """Uniform integer in [low, high], both ends included."""
        return min(bounds[0] + int(self.uniform() * (bounds[1] - bounds[0] + 1)), bounds[1])

    def normal(self, sd: float) -> float:
        # Box-Muller; 1 - u lies in (0, 1], so the logarithm is finite.
        return sd * math.sqrt(-2.0 * math.log(1.0 - self.uniform())) * math.cos(2.0 * math.pi * self.uniform())


def _direction(angle_deg: float) -> complex:
    """Unit vector x + iy for an angle from straight down (+y) towards +x; 180 = straight up."""
    angle = math.radians(angle_deg)
    return complex(math.sin(angle), math.cos(angle))


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, s, v)


def _skin_color(draws: _Draws) -> tuple[float, float, float]:
    return _hsv(draws.uniform(0.02, 0.1), draws.uniform(0.25, 0.6), draws.uniform(0.3, 0.95))


def _random_color(draws: _Draws, saturation: float = 0.8) -> tuple[float, float, float]:
    return _hsv(draws.uniform(), draws.uniform(0, saturation), draws.uniform(0.1, 0.95))


# ----------------------------------------------------------------------------------------------- pose
def _sample_pose(draws: _Draws, style: DomainStyle) -> tuple[list[complex], dict[str, float]]:
    """Joints (16, as x + iy) of a figure of height ~1 with the pelvis at 0, and its radii (same units)."""
    jitter = style.proportion_jitter
    torso, arm, leg, head, width = (draws.uniform(1 - jitter, 1 + jitter) for _ in range(5))

    def length(segment: str, factor: float) -> float:
        return _LENGTHS[segment] * factor * draws.uniform(1 - style.foreshortening, 1)

    joints = [0j] * 16
    down = draws.normal(style.torso_lean_deg)
    up = down + 180
    joints[THORAX] = joints[PELVIS] + length("torso", torso) * _direction(up)
    neck_angle = up + draws.normal(style.head_tilt_deg)
    joints[NECK] = joints[THORAX] + length("neck", torso) * _direction(neck_angle)
    head_angle = neck_angle + draws.normal(style.head_tilt_deg)
    joints[HEAD_TOP] = joints[NECK] + _LENGTHS["head"] * head * _direction(head_angle)

    # side = -1 is the person's right, drawn on the image's left: the figure faces the camera.
    for side, (shoulder, elbow, wrist) in ((-1, (R_SHOULDER, R_ELBOW, R_WRIST)), (1, (L_SHOULDER, L_ELBOW, L_WRIST))):
        outwards = _direction(down + side * 90)
        joints[shoulder] = joints[THORAX] + outwards * _SHOULDER_HALF_WIDTH * width + 0.02 * _direction(down)
        bend, flex, pick = draws.sign(), draws.between(style.elbow_flex_deg), draws.uniform()
        if pick < style.arm_cross_prob:  # folded in front of the torso
            abduction, bend, flex = draws.uniform(-45, -10), -1.0, draws.uniform(50, 130)
        elif pick < style.arm_cross_prob + style.arm_raised_prob:
            abduction = draws.uniform(100, 175)
        else:
            abduction = draws.between(style.arm_abduction_deg)
        upper = down + side * abduction
        joints[elbow] = joints[shoulder] + length("upper_arm", arm) * _direction(upper)
        joints[wrist] = joints[elbow] + length("forearm", arm) * _direction(upper + side * bend * flex)

    for side, (hip, knee, ankle) in ((-1, (R_HIP, R_KNEE, R_ANKLE)), (1, (L_HIP, L_KNEE, L_ANKLE))):
        joints[hip] = joints[PELVIS] + _direction(down + side * 90) * _HIP_HALF_WIDTH * width + 0.03 * _direction(down)
        thigh = down + side * draws.between(style.leg_abduction_deg)
        joints[knee] = joints[hip] + length("thigh", leg) * _direction(thigh)
        knee_bend = draws.sign() * draws.between(style.knee_flex_deg)
        joints[ankle] = joints[knee] + length("shin", leg) * _direction(thigh + side * knee_bend)

    limb_width = width * draws.between(style.limb_width)
    radii = {name: radius * limb_width for name, radius in _RADII.items()}
    radii.update(head=_HEAD_RADIUS * head, shoulder=_SHOULDER_HALF_WIDTH * width, hip=_HIP_HALF_WIDTH * width)
    return joints, radii


def _place_pose(
    draws: _Draws, style: DomainStyle, joints: list[complex], margin: float, size: int
) -> tuple[list[complex], float]:
    """Rotate, scale and translate figure-unit joints into pixels; the extent plus ``margin`` (figure units)
    lies inside the image up to ``style.position_slack``. Returns pixel joints and the scale (pixels per unit).
    """
    theta = math.radians(draws.uniform(-style.rotation_deg, style.rotation_deg))
    rotation = complex(math.cos(theta), math.sin(theta))
    scale = draws.between(style.figure_height) * size
    points = [z * rotation * scale for z in joints]
    reach = margin * scale
    slack = style.position_slack * size
    offset = []
    for low, high in (
        (min(z.real for z in points), max(z.real for z in points)),
        (min(z.imag for z in points), max(z.imag for z in points)),
    ):
        lo, hi = reach - low - slack, size - 1 - reach - high + slack
        offset.append(draws.uniform(lo, hi) if hi > lo else (lo + hi) / 2 + draws.uniform(-1, 1))
    shift = complex(offset[0], offset[1])
    return [z + shift for z in points], scale


# ------------------------------------------------------------------------------------------ appearance
def _figure_colors(draws: _Draws, style: DomainStyle) -> dict[str, tuple[tuple[float, float, float], str]]:
    """Colour and garment ("shirt", "trousers", "skin", "shoes", "hair") of each body part.

    Parts of one garment share its texture; in the "clothing" palette they also share its colour, so
    left and right limbs look alike and sleeves or shorts decide where skin shows.
    """
    if style.palette == "saturated":
        hue = {
            name: _hsv(draws.uniform(), draws.uniform(0.7, 1.0), draws.uniform(0.75, 1.0))
            for name in ("head", "torso", "right_arm", "left_arm", "right_leg", "left_leg")
        }
        darker = {
            name: tuple(0.85 * c for c in hue[name]) for name in ("right_arm", "left_arm", "right_leg", "left_leg")
        }
        return {
            "head": (hue["head"], "skin"), "hair": (hue["head"], "hair"), "neck": (hue["head"], "skin"),
            "torso": (hue["torso"], "shirt"), "hips": (hue["torso"], "trousers"),
            "right_upper_arm": (hue["right_arm"], "shirt"), "right_forearm": (darker["right_arm"], "shirt"),
            "left_upper_arm": (hue["left_arm"], "shirt"), "left_forearm": (darker["left_arm"], "shirt"),
            "right_thigh": (hue["right_leg"], "trousers"), "right_shin": (darker["right_leg"], "trousers"),
            "left_thigh": (hue["left_leg"], "trousers"), "left_shin": (darker["left_leg"], "trousers"),
            "hand": (hue["head"], "skin"), "foot": (hue["torso"], "shoes"),
        }  # fmt: skip
    if style.palette != "clothing":
        raise ValueError(f"palette must be 'saturated' or 'clothing', not {style.palette!r}")
    skin = (_skin_color(draws), "skin")
    shirt = (_hsv(draws.uniform(), draws.uniform(0.0, 0.7), draws.uniform(0.15, 0.9)), "shirt")
    trouser_hue = draws.uniform(0.55, 0.7) if draws.chance(0.5) else draws.uniform()  # often denim blue
    trousers = (_hsv(trouser_hue, draws.uniform(0, 0.5), draws.uniform(0.1, 0.7)), "trousers")
    hair = (_hsv(draws.uniform(0.02, 0.12), draws.uniform(0.2, 0.7), draws.uniform(0.05, 0.6)), "hair")
    shoes = (_hsv(draws.uniform(), draws.uniform(0, 0.4), draws.uniform(0.05, 0.35)), "shoes")
    forearm = shirt if draws.chance(0.6) else skin  # long or short sleeves
    shin = trousers if draws.chance(0.7) else skin  # trousers or shorts
    return {
        "head": skin, "hair": hair, "neck": skin, "torso": shirt, "hips": trousers,
        "right_upper_arm": shirt, "left_upper_arm": shirt, "right_forearm": forearm, "left_forearm": forearm,
        "right_thigh": trousers, "left_thigh": trousers, "right_shin": shin, "left_shin": shin,
        "hand": skin, "foot": shoes,
    }  # fmt: skip


def _texture(draws: _Draws, style: DomainStyle, stripes: bool = True) -> tuple[float, ...]:
    """(stripe amplitude, period px, angle, phase, grain amplitude, shading) of one garment or of skin."""
    amplitude, period, angle, phase = _FLAT[:4]
    if stripes and draws.chance(style.stripe_prob):
        amplitude, period = draws.between(style.stripe_amplitude), draws.uniform(1.5, 4.0)
        angle, phase = draws.uniform(0, math.pi), draws.uniform(0, 2 * math.pi)
    return amplitude, period, angle, phase, draws.between(style.fabric_noise), draws.between(style.limb_shading)


def _capsule(a: complex, b: complex, ra: float, rb: float, depth: float, color, texture, figure: bool) -> tuple:
    return (a.real, a.imag, b.real, b.imag, ra, rb, depth, *color, *texture, float(figure))


def _add_figure(
    draws: _Draws, style: DomainStyle, layers: list, joints: list[complex], radii: dict, scale: float
) -> None:
    """Torso, neck, head (and hair), legs with feet, arms with hands: tapered capsules in depth order."""
    colors = _figure_colors(draws, style)
    shirt, trousers, skin = _texture(draws, style), _texture(draws, style), _texture(draws, style, stripes=False)
    textures = {"shirt": shirt, "trousers": trousers, "skin": skin, "shoes": skin, "hair": (*_FLAT[:4], 0.2, skin[5])}
    r = {name: value * scale for name, value in radii.items()}
    j = joints

    def add(a, b, ra, rb, depth, part):
        color, garment = colors[part]
        layers.append(_capsule(a, b, ra, rb, depth, color, textures[garment], True))

    # Torso: a spine capsule, wide at the hips, plus bars across the shoulders and the hips.
    spine = j[THORAX] - j[PELVIS]
    spine /= max(abs(spine), 1e-6)
    add(
        j[PELVIS] + spine * 0.02 * scale,
        j[THORAX] - spine * 0.5 * r["shoulder"],
        r["hip"] * 1.35,
        r["shoulder"] * 0.95,
        0.0,
        "torso",
    )
    add(j[R_SHOULDER], j[L_SHOULDER], r["upper_arm"] * 1.2, r["upper_arm"] * 1.2, 0.01, "torso")
    add(j[R_HIP], j[L_HIP], r["thigh"], r["thigh"], -0.01, "hips")
    add(j[THORAX], j[NECK], r["neck"], r["neck"], -0.2, "neck")
    head_axis = j[HEAD_TOP] - j[NECK]
    head_top_centre = j[HEAD_TOP] - head_axis / max(abs(head_axis), 1e-6) * r["head"]
    add(j[NECK] + head_axis * 0.3, head_top_centre, r["head"] * 0.9, r["head"], 0.2, "head")
    if style.palette == "clothing" and draws.chance(0.8):
        hair = j[HEAD_TOP] - head_axis * 0.25
        add(hair, hair, r["head"] * 0.9, r["head"] * 0.9, 0.21, "hair")

    for name, (hip, knee, ankle), depth in (
        ("right", (R_HIP, R_KNEE, R_ANKLE), -0.5),
        ("left", (L_HIP, L_KNEE, L_ANKLE), -0.6),
    ):
        add(j[hip], j[knee], r["thigh"], r["thigh"] * 0.85, depth, f"{name}_thigh")
        add(j[knee], j[ankle], r["shin"] * 1.05, r["shin"] * 0.8, depth + 0.01, f"{name}_shin")
        shin = j[ankle] - j[knee]
        outwards = shin * (1j if name == "left" else -1j)  # feet point outwards
        toe = j[ankle] + (0.5 * outwards + 0.4 * shin) / max(abs(shin), 1e-6) * 0.06 * scale
        add(j[ankle], toe, r["shin"] * 0.8, r["shin"] * 0.7, depth + 0.02, "foot")

    for name, (shoulder, elbow, wrist) in (
        ("right", (R_SHOULDER, R_ELBOW, R_WRIST)),
        ("left", (L_SHOULDER, L_ELBOW, L_WRIST)),
    ):
        depth = -1.0 if draws.chance(style.arm_behind_torso_prob) else 1.0 + draws.uniform(0, 0.1)
        add(j[shoulder], j[elbow], r["upper_arm"] * 1.1, r["upper_arm"], depth, f"{name}_upper_arm")
        add(j[elbow], j[wrist], r["forearm"] * 1.1, r["forearm"], depth + 0.01, f"{name}_forearm")
        forearm = j[wrist] - j[elbow]
        hand = j[wrist] + forearm / max(abs(forearm), 1e-6) * r["hand"] * 1.2
        add(hand, hand, r["hand"] * 1.1, r["hand"] * 1.1, depth + 0.02, "hand")


def _add_clutter(draws: _Draws, style: DomainStyle, layers: list, size: int, scale: float) -> None:
    """Blobs, lines and limb-like distractor strokes behind the figure, and an optional occluder in front."""
    for _ in range(draws.integer(style.clutter_blobs)):
        center = complex(draws.uniform(-0.1, 1.1), draws.uniform(-0.1, 1.1)) * size
        axis = _direction(draws.uniform(0, 360)) * draws.uniform(0, 0.2) * size
        radius = draws.uniform(0.04, 0.14) * size
        texture = (*_FLAT[:4], draws.uniform(0, 0.3), draws.uniform(0, 0.5))
        layers.append(
            _capsule(
                center - axis,
                center + axis,
                radius,
                radius * draws.uniform(0.6, 1.4),
                -100 + draws.uniform(),
                _random_color(draws, 0.6),
                texture,
                False,
            )
        )
    for _ in range(draws.integer(style.clutter_lines)):
        a = complex(draws.uniform(-0.2, 1.2), draws.uniform(-0.2, 1.2)) * size
        b = complex(draws.uniform(-0.2, 1.2), draws.uniform(-0.2, 1.2)) * size
        width = draws.uniform(0.3, 1.0)
        layers.append(_capsule(a, b, width, width, -99 + draws.uniform(), _random_color(draws), _FLAT, False))
    for _ in range(draws.integer(style.distractor_limbs)):
        a = complex(draws.uniform(), draws.uniform()) * size
        b = a + _direction(draws.uniform(0, 360)) * draws.uniform(0.15, 0.3) * scale
        radius = draws.uniform(0.025, 0.045) * scale * draws.between(style.limb_width)
        color = _skin_color(draws) if draws.chance(0.5) else _random_color(draws)
        texture = (*_FLAT[:4], draws.between(style.fabric_noise), draws.between(style.limb_shading))
        layers.append(_capsule(a, b, radius, radius * 0.85, -98 + draws.uniform(), color, texture, False))
    if draws.chance(style.occluder_prob):
        center = complex(draws.uniform(0.25, 0.75), draws.uniform(0.25, 0.75)) * size
        axis = _direction(draws.uniform(0, 360)) * draws.uniform(0, 0.1) * size
        radius = draws.uniform(0.04, 0.08) * size
        texture = (*_FLAT[:4], draws.uniform(0, 0.3), draws.uniform(0, 0.5))
        layers.append(
            _capsule(center - axis, center + axis, radius, radius, 100.0, _random_color(draws), texture, False)
        )


# ---------------------------------------------------------------------------------------- background
@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: xs (1, S) and ys (S, 1), float32."""
    coords = np.arange(size, dtype=np.float32)
    return coords[None, :], coords[:, None]


@lru_cache(maxsize=64)
def _interpolation_matrix(size: int, cells: int) -> np.ndarray:
    """(size, cells + 1) linear interpolation weights from a coarse grid spanning the image."""
    position = np.linspace(0, cells, size)
    low = np.minimum(position.astype(int), cells - 1)
    matrix = np.zeros((size, cells + 1), dtype=np.float32)
    matrix[np.arange(size), low] = 1 - (position - low)
    matrix[np.arange(size), low + 1] = position - low
    return matrix


def _value_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth noise in [-1, 1]: a random (cells + 1)^2 grid, bilinearly upsampled to (channels, size, size)."""
    grid = rng.uniform(-1, 1, size=(channels, cells + 1, cells + 1)).astype(np.float32)
    matrix = _interpolation_matrix(size, cells)
    return matrix @ grid @ matrix.T


def _background(
    rng: np.random.Generator, draws: _Draws, style: DomainStyle, size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Background (3, S, S) float32 and the grain texture (S, S) shared by textured capsules (or None).

    Images are channel-first until the camera quantises them: numpy is slow on length-3 inner loops.
    """
    xs, ys = _pixel_grid(size)
    if style.background == "plain":
        first = np.array(_hsv(draws.uniform(), draws.uniform(0, 0.3), draws.uniform(0.2, 0.95)), dtype=np.float32)
        if draws.chance(0.5):
            return np.broadcast_to(first[:, None, None], (3, size, size)), None
        second = np.clip(first + np.array([draws.uniform(-0.25, 0.25) for _ in range(3)], dtype=np.float32), 0, 1)
        direction = _direction(draws.uniform(0, 360))
        ramp = np.clip(((xs - size / 2) * direction.real + (ys - size / 2) * direction.imag) / size + 0.5, 0, 1)
        return first[:, None, None] + (second - first)[:, None, None] * ramp, None
    if style.background != "textured":
        raise ValueError(f"background must be 'plain' or 'textured', not {style.background!r}")
    first = np.array(_random_color(draws, 0.6), dtype=np.float32)[:, None, None]
    second = np.array(_random_color(draws, 0.6), dtype=np.float32)[:, None, None]
    mix = (_value_noise(rng, size, draws.integer((2, 5))) + 1) * 0.5
    background = first + (second - first) * mix
    background += 0.1 * _value_noise(rng, size, draws.integer((6, 15)), 3)
    grain = (rng.random((size, size), dtype=np.float32) - 0.5) + _value_noise(rng, size, max(size // 4, 2))[0]
    background *= 1 + style.background_grain * grain
    return background, grain


@dataclass
class _Scene:
    """Everything drawn for one image before rasterising; ``draws`` and ``rng`` continue into the camera."""

    rng: np.random.Generator
    draws: _Draws
    keypoints: np.ndarray
    layers: np.ndarray
    background: np.ndarray
    grain: np.ndarray | None
    light: float


def _sample_scene(rng: np.random.Generator, style: DomainStyle, size: int) -> _Scene:
    """Pose, figure, clutter and background of one image: every random draw before the camera's."""
    draws = _Draws(rng)
    joints, radii = _sample_pose(draws, style)
    points, scale = _place_pose(draws, style, joints, radii["head"], size)
    layers: list[tuple] = []
    _add_figure(draws, style, layers, points, radii, scale)
    _add_clutter(draws, style, layers, size, scale)
    background, grain = _background(rng, draws, style, size)
    light = 0.6 * draws.sign()  # from the left or the right (and from the front)
    keypoints = np.array([(z.real, z.imag) for z in points], dtype=np.float32)
    return _Scene(rng, draws, keypoints, np.array(layers, dtype=np.float64), background, grain, light)


# ---------------------------------------------------------------------------------------- rasterising
def _rasterize(scenes: list[_Scene], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Paint every scene's capsules over its background, anti-aliased, in depth order; all scenes at once.

    Each capsule becomes fragments, one per pixel of the scanline spans that can reach it: coverage
    ``alpha = clip(r(t) + 1/2 - |p - (a + t (b - a))|, 0, 1)`` with t the clamped projection of the
    pixel centre p on the segment and r(t) the interpolated radius, and a colour (flat, or modulated
    by stripes, the grain and cylinder shading). The "over" operator in depth order is
    ``C(p) = sum_i alpha_i c_i prod_{j in front of i} (1 - alpha_j) + background(p) prod_j (1 - alpha_j)``,
    evaluated for all fragments together: a stable sort by pixel keeps them front to back, and the
    products are exponentials of per-pixel running sums of log(1 - alpha), accumulated rank by rank so
    that a pixel's value does not depend on what else is in the batch.
    Returns images (B, 3, S, S) float32 and the figures' coverage (B, S, S) float32.
    """
    rows = np.concatenate([scene.layers for scene in scenes])
    image_of = np.repeat(np.arange(len(scenes)), [len(scene.layers) for scene in scenes])
    light = np.array([scene.light for scene in scenes])[image_of]
    order = np.lexsort((-rows[:, 6], image_of))  # by image, then front to back
    rows, image_of, light = rows[order], image_of[order], light[order]
    ax, ay, bx, by, ra, rb = rows[:, :6].T
    dx, dy = bx - ax, by - ay
    reach = np.maximum(ra, rb) + 1.0
    length = np.hypot(dx, dy)
    disc = length < 1e-4  # any unit direction will do
    length = np.maximum(length, 1e-4)
    ux, uy = np.where(disc, 1.0, dx / length), np.where(disc, 0.0, dy / length)

    # Scanline spans: for each image row a capsule can reach, the x-range within ``reach`` of the part
    # of the segment whose y lies within ``reach`` of that row.
    y0 = np.clip(np.floor(np.minimum(ay, by) - reach), 0, size).astype(np.int64)
    y1 = np.clip(np.ceil(np.maximum(ay, by) + reach) + 1, 0, size).astype(np.int64)
    heights = np.maximum(y1 - y0, 0)
    span_capsule = np.repeat(np.arange(len(rows)), heights)
    span_y = np.arange(int(heights.sum())) - np.repeat(np.cumsum(heights) - heights, heights) + y0[span_capsule]
    s_ay, s_dy, s_ax, s_dx, s_reach = (
        ay[span_capsule],
        dy[span_capsule],
        ax[span_capsule],
        dx[span_capsule],
        reach[span_capsule],
    )
    flat = np.abs(s_dy) < 1e-6
    safe_dy = np.where(flat, 1.0, s_dy)
    t_a, t_b = (span_y - s_reach - s_ay) / safe_dy, (span_y + s_reach - s_ay) / safe_dy
    t_low = np.where(flat, 0.0, np.clip(np.minimum(t_a, t_b), 0, 1))
    t_high = np.where(flat, np.where(np.abs(span_y - s_ay) <= s_reach, 1.0, -1.0), np.clip(np.maximum(t_a, t_b), 0, 1))
    x_a, x_b = s_ax + t_low * s_dx, s_ax + t_high * s_dx
    x0 = np.clip(np.floor(np.minimum(x_a, x_b) - s_reach), 0, size).astype(np.int64)
    x1 = np.clip(np.floor(np.maximum(x_a, x_b) + s_reach) + 1, 0, size).astype(np.int64)
    widths = np.where(t_high >= t_low, np.maximum(x1 - x0, 0), 0)

    # Fragments: every pixel of every span.
    capsule = np.repeat(span_capsule, widths)
    px = np.arange(int(widths.sum())) - np.repeat(np.cumsum(widths) - widths, widths) + np.repeat(x0, widths)
    py = np.repeat(span_y, widths)
    geometry = np.stack([ax, ay, ux, uy, length, ra, rb - ra]).astype(np.float32)[:, capsule]
    f_ax, f_ay, f_ux, f_uy, f_length, f_ra, f_dr = geometry
    rx, ry = px.astype(np.float32) - f_ax, py.astype(np.float32) - f_ay
    along = rx * f_ux + ry * f_uy
    across = ry * f_ux - rx * f_uy
    t = np.clip(along / f_length, 0.0, 1.0)
    radius = f_ra + f_dr * t
    alpha = np.clip(radius + 0.5 - np.sqrt((along - t * f_length) ** 2 + across * across), 0.0, 1.0)

    # Covered fragments ordered by pixel, front to back within a pixel (the sort is stable).
    pixel = (image_of[capsule] * size + py) * size + px
    covered = np.flatnonzero(alpha > 0)
    order = covered[np.argsort(pixel[covered], kind="stable")]
    pixel, alpha, capsule = pixel[order], alpha[order], capsule[order]
    colors = rows[:, 7:10].T.astype(np.float32)[:, capsule]  # (3, fragments)
    amplitude, period, angle, phase, noise, shade = rows[:, 10:16].T
    grains = [scene.grain for scene in scenes]
    if amplitude.any() or shade.any() or (noise.any() and any(g is not None for g in grains)):
        wave = 2 * np.pi / period
        table = np.stack([amplitude, wave * np.cos(angle), wave * np.sin(angle), phase, noise, shade, light]).astype(
            np.float32
        )
        f_amplitude, f_kx, f_ky, f_phase, f_noise, f_shade, f_light = table[:, capsule]
        along, across, radius = along[order], across[order], radius[order]
        modulation = 1.0 + f_amplitude * np.sin(along * f_kx + across * f_ky + f_phase)
        if any(g is not None for g in grains):
            grain = np.stack([np.zeros((size, size), np.float32) if g is None else g for g in grains])
            modulation += f_noise * grain.reshape(-1)[pixel]
        # Cylinder shading: the surface normal across the capsule is (n, sqrt(1 - n^2)), the light
        # comes from the side (f_light) and the front (0.8).
        normal = np.clip(across / np.maximum(radius, 1e-3), -1.0, 1.0)
        lambert = np.maximum(normal * f_light + np.sqrt(1.0 - normal * normal) * 0.8, 0.0)
        modulation *= 1.0 - f_shade + f_shade * 1.3 * lambert
        colors *= modulation

    log_clear = np.log1p(-np.minimum(alpha, 1 - 1e-6).astype(np.float64))  # log(1 - alpha)
    first = np.flatnonzero(np.concatenate([[True], pixel[1:] != pixel[:-1]]))
    group_sizes = np.diff(first, append=len(pixel))
    rank = np.arange(len(pixel)) - np.repeat(first, group_sizes)
    behind = np.zeros(len(pixel))  # sum of log(1 - alpha) over the fragments in front, same pixel
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.cumsum(np.bincount(rank))
    for r in range(1, len(bounds)):
        index = by_rank[bounds[r - 1] : bounds[r]]
        behind[index] = behind[index - 1] + log_clear[index - 1]
    weight = alpha * np.exp(behind).astype(np.float32) * colors  # (3, fragments)
    count = size * size
    image_of_fragment, pixel_in_image = np.divmod(pixel, count)
    channel = (image_of_fragment * 3 * count + pixel_in_image) + (np.arange(3) * count)[:, None]  # (B, 3, S, S) order
    painted = np.bincount(channel.reshape(-1), weight.reshape(-1), minlength=len(scenes) * 3 * count)
    clear = np.exp(np.bincount(pixel, log_clear, minlength=len(scenes) * count).astype(np.float32))
    backgrounds = np.stack([scene.background for scene in scenes])
    images = painted.astype(np.float32).reshape(backgrounds.shape) + clear.reshape(-1, 1, size, size) * backgrounds
    on_figure = rows[capsule, 16] > 0.5
    figure_log_clear = np.bincount(pixel[on_figure], log_clear[on_figure], minlength=len(scenes) * count)
    figure_log_clear = figure_log_clear.astype(np.float32)
    return images, 1.0 - np.exp(figure_log_clear.reshape(-1, size, size))


# -------------------------------------------------------------------------------------------- camera
def _camera(rng: np.random.Generator, draws: _Draws, style: DomainStyle, image: np.ndarray) -> np.ndarray:
    """Optics blur, uneven illumination, sensor noise, tone curve and colour cast, JPEG: (3, S, S) float -> (S, S, 3) uint8."""
    size = image.shape[1]
    sigma = draws.between(style.blur_sigma)
    if sigma > 0.05:  # separable Gaussian, truncated at 3 sigma (scipy's gaussian_filter without its overhead)
        offsets = np.arange(-int(3 * sigma + 0.5), int(3 * sigma + 0.5) + 1)
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        kernel /= kernel.sum()
        image = correlate1d(correlate1d(image, kernel, axis=1, mode="nearest"), kernel, axis=2, mode="nearest")
    if style.illumination_gradient > 0:
        xs, ys = _pixel_grid(size)
        direction = _direction(draws.uniform(0, 360))
        ramp = ((xs - size / 2) * direction.real + (ys - size / 2) * direction.imag) / size  # about [-0.5, 0.5]
        image = image * (1 + draws.uniform(0, style.illumination_gradient) * ramp)
    noise = draws.between(style.noise_std)
    if noise > 0:  # uniform sensor noise of this standard deviation (cheaper to draw than Gaussian)
        image = image + (rng.random(image.shape, dtype=np.float32) - 0.5) * (noise * math.sqrt(12))
    pixels = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)

    # Tone curve as a lookup table: gamma, then contrast about the mean and brightness, then colour cast.
    gamma, contrast, brightness = (
        draws.between(style.gamma),
        draws.between(style.contrast),
        draws.between(style.brightness),
    )
    cast = [
        draws.uniform(1 - style.color_cast, 1 + style.color_cast) if style.color_cast > 0 else 1.0 for _ in range(3)
    ]
    if (gamma, contrast, brightness, *cast) != (1.0, 1.0, 0.0, 1.0, 1.0, 1.0):
        curve = (np.arange(256) / 255.0) ** gamma
        mean = float(np.bincount(pixels.reshape(-1), minlength=256) @ curve) / pixels.size
        curve = (curve - mean) * contrast + mean + brightness
        table = np.clip(np.outer(cast, curve) * 255 + 0.5, 0, 255).astype(np.uint8)  # (3, 256)
        pixels = np.stack([np.take(table[c], pixels[c]) for c in range(3)])
    pixels = np.ascontiguousarray(pixels.transpose(1, 2, 0))
    if draws.chance(style.jpeg_prob):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=draws.integer(style.jpeg_quality))
        pixels = np.asarray(Image.open(buffer).convert("RGB"))
    return pixels


def render_examples(rngs: list[np.random.Generator], style: DomainStyle, image_size: int = 64) -> list[RenderedFigure]:
    """Draw one figure of ``style`` per generator; each image depends only on its own generator."""
    scenes = [_sample_scene(rng, style, image_size) for rng in rngs]
    images, figure_alphas = _rasterize(scenes, image_size)
    examples = []
    for scene, image, figure_alpha in zip(scenes, images, figure_alphas, strict=True):
        pixels = _camera(scene.rng, scene.draws, style, image)
        inside = (scene.keypoints >= 0).all(1) & (scene.keypoints <= image_size - 1).all(1)
        rows, cols = np.nonzero(figure_alpha > 0.5)
        if rows.size:
            bbox = np.array(
                [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1], dtype=np.float32
            )
        else:
            bbox = np.array([0, 0, image_size, image_size], dtype=np.float32)
        examples.append(RenderedFigure(pixels, scene.keypoints, inside, bbox, figure_alpha))
    return examples


def render_example(rng: np.random.Generator, style: DomainStyle, image_size: int = 64) -> RenderedFigure:
    """Draw one figure of ``style`` on an ``image_size`` square image, all randomness from ``rng``."""
    return render_examples([rng], style, image_size)[0]


def _encode_png(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes (filter 0, zlib level 1): a fraction of PIL's per-image overhead."""
    height, width, _ = pixels.shape
    raw = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, -1)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------------------- generation
def _render_chunk(
    root: str, split: str, indices: list[int], seed: int, image_size: int, style: DomainStyle
) -> list[tuple]:
    """Render and write the PNGs of some indices of one split; returns (index, keypoints, visible, bbox)."""
    folder = Path(root) / "images" / split
    results = []
    for start in range(0, len(indices), _BATCH):
        batch = indices[start : start + _BATCH]
        examples = render_examples(
            [np.random.default_rng((seed, SPLITS.index(split), index)) for index in batch], style, image_size
        )
        for index, example in zip(batch, examples, strict=True):
            (folder / f"{index:06d}.png").write_bytes(_encode_png(example.image))
            results.append((index, example.keypoints, example.visible, example.bbox))
    return results


def _parameters(
    image_size: int, sizes: dict[str, int] | None, seed: int, source_style: DomainStyle, target_style: DomainStyle
) -> dict:
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown benchmark splits {sorted(unknown)}; splits are {list(SPLITS)}")
    payload = {
        "generator": "posealign.data.synthetic_benchmark",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "image_size": int(image_size),
        "sizes": {split: int(sizes[split]) for split in SPLITS},
        "keypoint_set": BODY16.name,
        "styles": {"source": asdict(source_style), "target": asdict(target_style)},
    }
    return json.loads(json.dumps(payload))  # tuples become lists, as when read back from the file


def benchmark_is_complete(
    root: str | Path,
    image_size: int = 64,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    workers: int = 1,
    *,
    source_style: DomainStyle = SOURCE_STYLE,
    target_style: DomainStyle = TARGET_STYLE,
) -> bool:
    """True when ``root/benchmark.json`` records a finished generation with exactly these parameters.

    Takes the keyword arguments of :func:`generate_benchmark`; ``workers`` does not change the files
    and is ignored.
    """
    try:
        written = json.loads((Path(root) / "benchmark.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return written == _parameters(image_size, sizes, seed, source_style, target_style)


def generate_benchmark(
    root: str | Path,
    image_size: int = 64,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    workers: int = 1,
    *,
    source_style: DomainStyle = SOURCE_STYLE,
    target_style: DomainStyle = TARGET_STYLE,
) -> Path:
    """Write the benchmark into ``root`` (layout in the module docstring) unless it is already complete.

    ``sizes`` overrides the number of images of some splits (the others keep ``DEFAULT_SIZES``).
    ``workers > 1`` renders in a process pool; the files are identical either way.
    Regenerating deletes only what the generator writes: ``images/<split>/``, the annotation files
    and ``benchmark.json``.
    """
    root = Path(root)
    parameters = _parameters(image_size, sizes, seed, source_style, target_style)
    if benchmark_is_complete(root, image_size, sizes, seed, source_style=source_style, target_style=target_style):
        return root
    marker = root / "benchmark.json"
    marker.unlink(missing_ok=True)  # from here on the folder reads as incomplete until the marker is rewritten
    for split in SPLITS:
        shutil.rmtree(root / "images" / split, ignore_errors=True)
        (root / "images" / split).mkdir(parents=True)

    jobs = []
    for split in SPLITS:
        count, style = parameters["sizes"][split], source_style if split.startswith("source") else target_style
        chunk = max(1, min(250, -(-count // max(workers, 1))))
        jobs += [
            (str(root), split, list(range(start, min(start + chunk, count))), seed, image_size, style)
            for start in range(0, count, chunk)
        ]
    if workers > 1:
        # fork where there is one: spawn would re-run the caller's __main__ (``python -m posealign``
        # has no main guard); the workers only use numpy, so fork's caveats about threads do not bite.
        context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            chunks = list(pool.map(_render_chunk, *zip(*jobs, strict=True)))
    else:
        chunks = [_render_chunk(*job) for job in jobs]

    for split in SPLITS:
        rendered = sorted(
            (row for job, rows in zip(jobs, chunks, strict=True) if job[1] == split for row in rows),
            key=lambda row: row[0],
        )
        records = [
            PoseRecord(
                image=root / "images" / split / f"{index:06d}.png",
                keypoints=keypoints,
                visible=visible,
                bbox=bbox,
                crop_box=square_box_around(0, 0, image_size, image_size),
                split=split,
            )
            for index, keypoints, visible, bbox in rendered
        ]
        write_coco(
            root / "annotations" / f"{split}.json", records, BODY16, root, [(image_size, image_size)] * len(records)
        )

    temporary = marker.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(parameters, indent=2))
    temporary.replace(marker)
    return root

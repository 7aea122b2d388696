"""The human figure: a Body16 pose placed in the image, colours and textures per garment, and the
capsules of every body part."""

from __future__ import annotations

from posealign.benchmark.capsules import FLAT_TEXTURE, capsule, sample_texture
from posealign.benchmark.colors import hsv, skin_color
from posealign.benchmark.domains import HumanStyle
from posealign.benchmark.draws import Draws
from posealign.benchmark.human_pose import (
    HEAD_TOP,
    L_ANKLE,
    L_ELBOW,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    NECK,
    PELVIS,
    R_ANKLE,
    R_ELBOW,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    R_WRIST,
    THORAX,
    sample_pose,
)
from posealign.benchmark.placement import place_pose


def _figure_colors(draws: Draws, style: HumanStyle) -> dict[str, tuple[tuple[float, float, float], str]]:
    """Colour and garment ("shirt", "trousers", "skin", "shoes", "hair") of each body part.

    Parts of one garment share its texture; in the "clothing" palette they also share its colour, so
    left and right limbs look alike and sleeves or shorts decide where skin shows.
    """
    if style.palette == "saturated":
        hue = {
            name: hsv(draws.uniform(), draws.uniform(0.7, 1.0), draws.uniform(0.75, 1.0))
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
    skin = (skin_color(draws), "skin")
    shirt = (hsv(draws.uniform(), draws.uniform(0.0, 0.7), draws.uniform(0.15, 0.9)), "shirt")
    trouser_hue = draws.uniform(0.55, 0.7) if draws.chance(0.5) else draws.uniform()  # often denim blue
    trousers = (hsv(trouser_hue, draws.uniform(0, 0.5), draws.uniform(0.1, 0.7)), "trousers")
    hair = (hsv(draws.uniform(0.02, 0.12), draws.uniform(0.2, 0.7), draws.uniform(0.05, 0.6)), "hair")
    shoes = (hsv(draws.uniform(), draws.uniform(0, 0.4), draws.uniform(0.05, 0.35)), "shoes")
    forearm = shirt if draws.chance(0.6) else skin  # long or short sleeves
    shin = trousers if draws.chance(0.7) else skin  # trousers or shorts
    return {
        "head": skin, "hair": hair, "neck": skin, "torso": shirt, "hips": trousers,
        "right_upper_arm": shirt, "left_upper_arm": shirt, "right_forearm": forearm, "left_forearm": forearm,
        "right_thigh": trousers, "left_thigh": trousers, "right_shin": shin, "left_shin": shin,
        "hand": skin, "foot": shoes,
    }  # fmt: skip


def add_figure(draws: Draws, style: HumanStyle, layers: list, joints: list[complex], radii: dict, scale: float) -> None:
    """Torso, neck, head (and hair), legs with feet, arms with hands: tapered capsules in depth order."""
    colors = _figure_colors(draws, style)
    shirt, trousers, skin = (
        sample_texture(draws, style),
        sample_texture(draws, style),
        sample_texture(draws, style, stripes=False),
    )
    textures = {
        "shirt": shirt,
        "trousers": trousers,
        "skin": skin,
        "shoes": skin,
        "hair": (*FLAT_TEXTURE[:4], 0.2, skin[5]),
    }
    r = {name: value * scale for name, value in radii.items()}
    j = joints

    def add(a, b, ra, rb, depth, part):
        color, garment = colors[part]
        layers.append(capsule(a, b, ra, rb, depth, color, textures[garment], True))

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


def draw_human(draws: Draws, style: HumanStyle, layers: list, size: int) -> tuple[list[complex], float]:
    """A Body16 figure of ``style`` in an image of side ``size``: its capsules go into ``layers``.

    Returns the 16 keypoints in pixels (x + iy, Body16 order) and the scale (pixels per figure height).
    """
    joints, radii = sample_pose(draws, style)
    points, scale = place_pose(draws, style, joints, radii["head"], size, style.figure_height)
    add_figure(draws, style, layers, points, radii, scale)
    return points, scale

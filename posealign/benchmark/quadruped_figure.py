"""The quadruped figure: an Animal14 pose placed in the image, a colour per body part (vivid hues, or
one fur coat with darker or white lower legs) and the capsules of every part in depth order: far
legs, far eye and ear, tail, torso, neck, head, near eye and ear, near legs."""

from __future__ import annotations

from posealign.benchmark.capsules import FLAT_TEXTURE, capsule, sample_texture
from posealign.benchmark.colors import fur_color, hsv
from posealign.benchmark.draws import Draws
from posealign.benchmark.placement import place_pose
from posealign.benchmark.quadruped_domains import QuadrupedStyle
from posealign.benchmark.quadruped_pose import LEGS, sample_pose

Color = tuple[float, float, float]
_EYE: Color = (0.03, 0.03, 0.03)


def _darker(color: Color, factor: float) -> Color:
    return tuple(factor * c for c in color)


def _part_colors(draws: Draws, style: QuadrupedStyle) -> dict[str, tuple[Color, str]]:
    """Colour and texture name ("coat", "legs", "hoof", "eye") of each part.

    "saturated": a vivid hue for the torso, the head and each leg (lower leg darker), so a part's
    colour says nothing about where it is. "fur": one coat; the lower legs in the coat, darker
    (points) or white (socks); the far legs in shadow; mane and tail often darker.
    """
    hoof = (hsv(0.08, draws.uniform(0, 0.4), draws.uniform(0.05, 0.3)), "hoof")
    colors = {"hoof": hoof, "eye": (_EYE, "eye")}
    if style.palette == "saturated":
        vivid = {
            part: hsv(draws.uniform(), draws.uniform(0.7, 1.0), draws.uniform(0.75, 1.0))
            for part in ("torso", "head", *LEGS)
        }
        colors.update(torso=(vivid["torso"], "coat"), tail=(_darker(vivid["torso"], 0.85), "coat"))
        colors.update(head=(vivid["head"], "coat"), neck=(vivid["head"], "coat"), ear=(vivid["head"], "coat"))
        for leg in LEGS:
            colors.update({f"{leg}_upper": (vivid[leg], "coat"), f"{leg}_lower": (_darker(vivid[leg], 0.85), "coat")})
        return colors
    if style.palette != "fur":
        raise ValueError(f"palette must be 'saturated' or 'fur', not {style.palette!r}")
    coat = fur_color(draws)
    pick = draws.uniform()
    if pick < 0.25:
        lower = hsv(0.1, draws.uniform(0, 0.1), draws.uniform(0.8, 0.95))  # white socks
    elif pick < 0.5:
        lower = _darker(coat, draws.uniform(0.2, 0.5))  # dark points
    else:
        lower = coat
    mane = _darker(coat, draws.uniform(0.4, 1.0))
    colors.update(torso=(coat, "coat"), head=(coat, "coat"), ear=(coat, "coat"), neck=(coat, "coat"))
    colors.update(tail=(mane, "coat"))
    for leg in LEGS:
        shadow = 0.7 if leg.startswith("far") else 1.0  # the far side is in the body's shadow
        colors[f"{leg}_upper"] = (_darker(coat, shadow), "coat")
        colors[f"{leg}_lower"] = (_darker(lower, shadow), "legs" if lower is not coat else "coat")
    return colors


def add_quadruped(draws: Draws, style: QuadrupedStyle, layers: list, points: dict[str, complex], radii: dict) -> None:
    """Torso, neck, head with ears and eyes, tail and four legs: tapered capsules in depth order.

    ``points`` and ``radii`` are in pixels. The near side's parts are drawn over the torso and the far
    side's behind it, whichever anatomical side is near.
    """
    colors = _part_colors(draws, style)
    textures = {
        "coat": sample_texture(draws, style),
        "legs": sample_texture(draws, style, stripes=False),
        "hoof": FLAT_TEXTURE,
        "eye": FLAT_TEXTURE,
    }
    p, r = points, radii

    def add(a: str, b: str, ra: float, rb: float, depth: float, part: str) -> None:
        color, texture = colors[part]
        layers.append(capsule(p[a], p[b], ra, rb, depth, color, textures[texture], True))

    for side, depth in (("far", -1.0), ("near", 1.0)):
        for leg in (f"{side}_front", f"{side}_back"):
            # The shoulder or haunch muscle blends the leg into the torso (drawn over it on the near side).
            bulk = r["shoulder"] if leg.endswith("front") else r["haunch"]
            add(f"{leg}_top", f"{leg}_elbow", bulk, r["upper_leg"] * 1.3, depth, f"{leg}_upper")
            add(f"{leg}_elbow", f"{leg}_knee", r["upper_leg"] * 1.1, r["upper_leg"] * 0.9, depth + 0.01, f"{leg}_upper")
            add(f"{leg}_knee", f"{leg}_hoof", r["lower_leg"], r["lower_leg"] * 0.85, depth + 0.02, f"{leg}_lower")
            add(f"{leg}_hoof", f"{leg}_hoof", r["hoof"], r["hoof"], depth + 0.03, "hoof")
            depth += 0.1  # the front leg of a side over its hind leg
    add("far_eye", "far_eye", r["eye"], r["eye"], -0.5, "eye")
    add("poll", "far_ear", r["ear"] * 1.6, r["ear"] * 0.6, -0.4, "ear")
    add("tail_root", "tail_mid", r["tail"] * 1.3, r["tail"], -0.3, "tail")
    add("tail_mid", "tail_tip", r["tail"], r["tail"] * 0.6, -0.29, "tail")
    add("hip", "shoulder", r["rump"], r["chest"], 0.0, "torso")
    add("neck_base", "poll", r["neck"] * 1.4, r["neck"], 0.1, "neck")
    add("poll", "muzzle", r["head"], r["muzzle"], 0.3, "head")
    add("near_eye", "near_eye", r["eye"], r["eye"], 0.31, "eye")
    add("poll", "near_ear", r["ear"] * 1.6, r["ear"] * 0.6, 0.32, "ear")


def draw_quadruped(draws: Draws, style: QuadrupedStyle, layers: list, size: int) -> tuple[list[complex], float]:
    """An Animal14 figure of ``style`` in an image of side ``size``: its capsules go into ``layers``.

    Returns the 14 keypoints in pixels (x + iy, Animal14 order) and the scale (pixels per figure unit).
    """
    pose = sample_pose(draws, style)
    names = list(pose.points)
    placed, scale = place_pose(
        draws, style, [pose.points[name] for name in names], pose.radii["head"], size, style.figure_length
    )
    pose.points = dict(zip(names, placed, strict=True))
    add_quadruped(draws, style, layers, pose.points, {name: radius * scale for name, radius in pose.radii.items()})
    return pose.animal14_keypoints(), scale

"""The hand figure: a Hand21 pose placed in the image, a colour per part (vivid hues, or one skin
tone with a sleeve or the bare forearm) and the capsules of the forearm, the palm and the fingers,
each at the depth of its middle."""

from __future__ import annotations

from posealign.benchmark.capsules import capsule, sample_texture
from posealign.benchmark.colors import hsv, random_color, skin_color
from posealign.benchmark.draws import Draws
from posealign.benchmark.hand_domains import HandStyle
from posealign.benchmark.hand_pose import FINGERS, JOINTS, HandPose, sample_pose
from posealign.benchmark.placement import place_pose

Color = tuple[float, float, float]

# The palm's capsules between named points: the fan from the wrist to the MCPs, the knuckles, the
# thenar pad (wrist to the index MCP over the thumb's base) and a bar across the middle.
_PALM = (
    ("wrist_ulnar", "little_mcp"),
    ("wrist_mid_ulnar", "ring_mcp"),
    ("wrist_mid_radial", "middle_mcp"),
    ("wrist_radial", "index_mcp"),
    ("little_mcp", "index_mcp"),
    ("thumb_mcp", "index_mcp"),
    ("palm_ulnar", "palm_radial"),
    ("wrist_ulnar", "wrist_radial"),
)


def _part_colors(draws: Draws, style: HandStyle) -> dict[str, Color]:
    """Colour of the palm, each finger and the forearm.

    "saturated": a vivid hue for the palm, each finger and the forearm, so a colour says nothing about
    which finger it is. "skin": one skin tone for the hand; the forearm in a sleeve (any colour) or bare.
    """
    if style.palette == "saturated":
        return {
            part: hsv(draws.uniform(), draws.uniform(0.7, 1.0), draws.uniform(0.75, 1.0))
            for part in ("palm", "forearm", *FINGERS)
        }
    if style.palette != "skin":
        raise ValueError(f"palette must be 'saturated' or 'skin', not {style.palette!r}")
    skin = skin_color(draws)
    forearm = random_color(draws, 0.7) if draws.chance(style.sleeve_prob) else skin
    return {"palm": skin, "forearm": forearm, **{finger: skin for finger in FINGERS}}


def add_hand(draws: Draws, style: HandStyle, layers: list, pose: HandPose, scale: float) -> None:
    """Forearm, palm and fingers as tapered capsules; ``pose.points`` in pixels, radii x ``scale``."""
    colors = _part_colors(draws, style)
    skin_texture = sample_texture(draws, style, stripes=False)
    forearm_texture = sample_texture(draws, style) if colors["forearm"] != colors["palm"] else skin_texture
    # The palm is one surface drawn as overlapping capsules: shading each like a cylinder would
    # stripe it, so it keeps a third of the shading.
    palm_texture = (*skin_texture[:5], skin_texture[5] / 3)
    p, depth = pose.points, pose.depth
    r = {name: radius * scale for name, radius in pose.radii.items()}

    def add(a: str, b: str, ra: float, rb: float, part: str, texture, lift: float = 0.0) -> None:
        layers.append(capsule(p[a], p[b], ra, rb, (depth[a] + depth[b]) / 2 + lift, colors[part], texture, True))

    add("wrist", "elbow", r["forearm"], r["forearm"] * 1.15, "forearm", forearm_texture, -0.05)
    for a, b in _PALM:
        add(a, b, r["palm"], r["palm"], "palm", palm_texture)
    for finger in FINGERS:
        radius = r[finger]
        for k in range(3):  # each segment a little thinner; a finger over the palm where they meet
            a, b = f"{finger}_{JOINTS[k]}", f"{finger}_{JOINTS[k + 1]}"
            add(a, b, radius * (1 - 0.08 * k), radius * (0.92 - 0.08 * k), finger, skin_texture, 0.01 + 0.001 * k)


def draw_hand(draws: Draws, style: HandStyle, layers: list, size: int) -> tuple[list[complex], float]:
    """A Hand21 figure of ``style`` in an image of side ``size``: its capsules go into ``layers``.

    Returns the 21 keypoints in pixels (x + iy, Hand21 order) and the scale (pixels per figure unit).
    """
    pose = sample_pose(draws, style)
    names = [name for name in pose.points if name != "elbow"]
    placed, scale = place_pose(
        draws,
        style,
        [pose.points[name] for name in names],
        max(pose.radii.values()),
        size,
        style.hand_length,
        [pose.points["elbow"]],
    )
    pose.points = dict(zip([*names, "elbow"], placed, strict=True))
    add_hand(draws, style, layers, pose, scale)
    return pose.hand21_keypoints(), scale

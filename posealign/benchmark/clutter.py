"""What is in the picture but is not the figure: structure that restyling a source image cannot add."""

from __future__ import annotations

from collections.abc import Callable

from posealign.benchmark.capsules import FLAT_TEXTURE, capsule
from posealign.benchmark.colors import random_color
from posealign.benchmark.domains import DomainStyle
from posealign.benchmark.draws import Draws
from posealign.benchmark.geometry import unit_direction


def add_clutter(
    draws: Draws,
    style: DomainStyle,
    layers: list,
    size: int,
    scale: float,
    limb_color: Callable[[Draws], tuple[float, float, float]],
) -> None:
    """Blobs, lines and limb-like distractor strokes behind the figure, and an optional occluder in front.

    Half of the distractor strokes take ``limb_color`` (the body plan's natural limb tones: skin, fur)
    so that they look like a limb of the figure; ``scale`` is the figure's pixels per unit.
    """
    for _ in range(draws.integer(style.clutter_blobs)):
        center = complex(draws.uniform(-0.1, 1.1), draws.uniform(-0.1, 1.1)) * size
        axis = unit_direction(draws.uniform(0, 360)) * draws.uniform(0, 0.2) * size
        radius = draws.uniform(0.04, 0.14) * size
        texture = (*FLAT_TEXTURE[:4], draws.uniform(0, 0.3), draws.uniform(0, 0.5))
        layers.append(
            capsule(
                center - axis,
                center + axis,
                radius,
                radius * draws.uniform(0.6, 1.4),
                -100 + draws.uniform(),
                random_color(draws, 0.6),
                texture,
                False,
            )
        )
    for _ in range(draws.integer(style.clutter_lines)):
        a = complex(draws.uniform(-0.2, 1.2), draws.uniform(-0.2, 1.2)) * size
        b = complex(draws.uniform(-0.2, 1.2), draws.uniform(-0.2, 1.2)) * size
        width = draws.uniform(0.3, 1.0)
        layers.append(capsule(a, b, width, width, -99 + draws.uniform(), random_color(draws), FLAT_TEXTURE, False))
    for _ in range(draws.integer(style.distractor_limbs)):
        a = complex(draws.uniform(), draws.uniform()) * size
        b = a + unit_direction(draws.uniform(0, 360)) * draws.uniform(0.15, 0.3) * scale
        radius = draws.uniform(0.025, 0.045) * scale * draws.between(style.limb_width)
        color = limb_color(draws) if draws.chance(0.5) else random_color(draws)
        texture = (*FLAT_TEXTURE[:4], draws.between(style.fabric_noise), draws.between(style.limb_shading))
        layers.append(capsule(a, b, radius, radius * 0.85, -98 + draws.uniform(), color, texture, False))
    if draws.chance(style.occluder_prob):
        center = complex(draws.uniform(0.25, 0.75), draws.uniform(0.25, 0.75)) * size
        axis = unit_direction(draws.uniform(0, 360)) * draws.uniform(0, 0.1) * size
        radius = draws.uniform(0.04, 0.08) * size
        texture = (*FLAT_TEXTURE[:4], draws.uniform(0, 0.3), draws.uniform(0, 0.5))
        layers.append(capsule(center - axis, center + axis, radius, radius, 100.0, random_color(draws), texture, False))

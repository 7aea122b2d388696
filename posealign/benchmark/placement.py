"""Placing a figure in the image: rotated in the image plane, scaled and shifted so that it fits.

Shared by every body plan: a pose sampler returns points in figure units, this turns them into pixels.
"""

from __future__ import annotations

import math

from posealign.benchmark.domains import DomainStyle
from posealign.benchmark.draws import Draws


def place_pose(
    draws: Draws,
    style: DomainStyle,
    joints: list[complex],
    margin: float,
    size: int,
    figure_size: tuple[float, float],
    carried: list[complex] = (),
) -> tuple[list[complex], float]:
    """Rotate, scale and translate figure-unit joints into pixels; the extent plus ``margin`` (figure units)
    lies inside the image up to ``style.position_slack``. One figure unit is ``U(figure_size)`` image
    sides. ``carried`` points (a forearm's far end) move with the joints but may leave the image.
    Returns pixel joints, then the carried points, and the scale (pixels per unit).
    """
    theta = math.radians(draws.uniform(-style.rotation_deg, style.rotation_deg))
    rotation = complex(math.cos(theta), math.sin(theta))
    scale = draws.between(figure_size) * size
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
    return [z + shift for z in (*points, *(z * rotation * scale for z in carried))], scale

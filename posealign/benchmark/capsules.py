"""The one primitive the rasteriser paints: a tapered capsule, stored as one row of numbers.

A row is: a (x, y), b (x, y), radius at a, radius at b, depth (larger = in front), colour (r, g, b),
texture (stripe amplitude, stripe period in pixels, stripe angle, stripe phase, grain amplitude,
shading strength), figure flag (1 for the figure's own parts). Rows of all kinds (figure, clutter,
occluder) go through one rasteriser, which sorts them by depth.
"""

from __future__ import annotations

import math

from posealign.benchmark.domains import DomainStyle
from posealign.benchmark.draws import Draws

FLAT_TEXTURE = (0.0, 1.0, 0.0, 0.0, 0.0, 0.0)  # no stripes, no grain, no shading


def capsule(a: complex, b: complex, ra: float, rb: float, depth: float, color, texture, figure: bool) -> tuple:
    """One capsule row (layout in the module docstring); ``a`` and ``b`` are pixel points x + iy."""
    return (a.real, a.imag, b.real, b.imag, ra, rb, depth, *color, *texture, float(figure))


def sample_texture(draws: Draws, style: DomainStyle, stripes: bool = True) -> tuple[float, ...]:
    """(stripe amplitude, period px, angle, phase, grain amplitude, shading) of one garment, coat or skin."""
    amplitude, period, angle, phase = FLAT_TEXTURE[:4]
    if stripes and draws.chance(style.stripe_prob):
        amplitude, period = draws.between(style.stripe_amplitude), draws.uniform(1.5, 4.0)
        angle, phase = draws.uniform(0, math.pi), draws.uniform(0, 2 * math.pi)
    return amplitude, period, angle, phase, draws.between(style.fabric_noise), draws.between(style.limb_shading)

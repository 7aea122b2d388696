"""The one primitive the rasteriser paints: a tapered capsule, stored as one row of numbers.

A row is: a (x, y), b (x, y), radius at a, radius at b, depth (larger = in front), colour (r, g, b),
texture (stripe amplitude, stripe period in pixels, stripe angle, stripe phase, grain amplitude,
shading strength), figure flag (1 for the figure's own parts). Rows of all kinds (figure, clutter,
occluder) go through one rasteriser, which sorts them by depth.
"""

from __future__ import annotations

FLAT_TEXTURE = (0.0, 1.0, 0.0, 0.0, 0.0, 0.0)  # no stripes, no grain, no shading


def capsule(a: complex, b: complex, ra: float, rb: float, depth: float, color, texture, figure: bool) -> tuple:
    """One capsule row (layout in the module docstring); ``a`` and ``b`` are pixel points x + iy."""
    return (a.real, a.imag, b.real, b.imag, ra, rb, depth, *color, *texture, float(figure))

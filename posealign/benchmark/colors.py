"""Random colours (RGB in [0, 1]) for limbs, skin, fur, clutter and backgrounds."""

from __future__ import annotations

import colorsys

from posealign.benchmark.draws import Draws


def hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    """RGB of a hue (wrapped into [0, 1)), saturation and value: colours are drawn in HSV."""
    return colorsys.hsv_to_rgb(h % 1.0, s, v)


def skin_color(draws: Draws) -> tuple[float, float, float]:
    """A skin tone: orange-red hues, moderate saturation, dark to light."""
    return hsv(draws.uniform(0.02, 0.1), draws.uniform(0.25, 0.6), draws.uniform(0.3, 0.95))


def fur_color(draws: Draws) -> tuple[float, float, float]:
    """A coat: mostly browns, tans, reds and golds; one in five black, grey or white."""
    if draws.chance(0.2):
        return hsv(draws.uniform(), draws.uniform(0, 0.1), draws.uniform(0.08, 0.95))
    return hsv(draws.uniform(0.02, 0.13), draws.uniform(0.3, 0.85), draws.uniform(0.2, 0.9))


def random_color(draws: Draws, saturation: float = 0.8) -> tuple[float, float, float]:
    """Any hue, saturation up to ``saturation``, neither black nor white."""
    return hsv(draws.uniform(), draws.uniform(0, saturation), draws.uniform(0.1, 0.95))

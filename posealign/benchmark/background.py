"""Backgrounds: plain (uniform or a two-colour gradient) or textured (smooth colour noise + grain)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from posealign.benchmark.colors import hsv, random_color
from posealign.benchmark.domains import DomainStyle
from posealign.benchmark.draws import Draws
from posealign.benchmark.geometry import pixel_grid, unit_direction


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


def sample_background(
    rng: np.random.Generator, draws: Draws, style: DomainStyle, size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Background (3, S, S) float32 and the grain texture (S, S) shared by textured capsules (or None).

    Images are channel-first until the camera quantises them: numpy is slow on length-3 inner loops.
    """
    xs, ys = pixel_grid(size)
    if style.background == "plain":
        first = np.array(hsv(draws.uniform(), draws.uniform(0, 0.3), draws.uniform(0.2, 0.95)), dtype=np.float32)
        if draws.chance(0.5):
            return np.broadcast_to(first[:, None, None], (3, size, size)), None
        second = np.clip(first + np.array([draws.uniform(-0.25, 0.25) for _ in range(3)], dtype=np.float32), 0, 1)
        direction = unit_direction(draws.uniform(0, 360))
        ramp = np.clip(((xs - size / 2) * direction.real + (ys - size / 2) * direction.imag) / size + 0.5, 0, 1)
        return first[:, None, None] + (second - first)[:, None, None] * ramp, None
    if style.background != "textured":
        raise ValueError(f"background must be 'plain' or 'textured', not {style.background!r}")
    first = np.array(random_color(draws, 0.6), dtype=np.float32)[:, None, None]
    second = np.array(random_color(draws, 0.6), dtype=np.float32)[:, None, None]
    mix = (_value_noise(rng, size, draws.integer((2, 5))) + 1) * 0.5
    background = first + (second - first) * mix
    background += 0.1 * _value_noise(rng, size, draws.integer((6, 15)), 3)
    grain = (rng.random((size, size), dtype=np.float32) - 0.5) + _value_noise(rng, size, max(size // 4, 2))[0]
    background *= 1 + style.background_grain * grain
    return background, grain

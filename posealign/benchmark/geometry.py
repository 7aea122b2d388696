"""Image-plane helpers shared by pose sampling, the background and the camera.

Points are complex numbers x + iy in image coordinates (x right, y down).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def unit_direction(angle_deg: float) -> complex:
    """Unit vector x + iy for an angle from straight down (+y) towards +x; 180 = straight up."""
    angle = math.radians(angle_deg)
    return complex(math.sin(angle), math.cos(angle))


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: xs (1, S) and ys (S, 1), float32."""
    coords = np.arange(size, dtype=np.float32)
    return coords[None, :], coords[:, None]

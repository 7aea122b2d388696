"""Cheap scalar random numbers: the sampling steps draw hundreds of scalars per image."""

from __future__ import annotations

import math

import numpy as np


class Draws:
    """Scalar random numbers for one image, drawn in one block and consumed in order.

    Hundreds of scalar draws per image through ``Generator.uniform`` would cost more than the
    drawing itself; the sequence stays a pure function of the image's generator.
    """

    def __init__(self, rng: np.random.Generator, block: int = 512) -> None:
        self._rng, self._block = rng, block
        self._values: list[float] = []
        self._next = 0

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        if self._next == len(self._values):
            self._values.extend(self._rng.random(self._block).tolist())
        value = self._values[self._next]
        self._next += 1
        return low + (high - low) * value

    def between(self, bounds: tuple[float, float]) -> float:
        return self.uniform(bounds[0], bounds[1])

    def chance(self, probability: float) -> bool:
        return self.uniform() < probability

    def sign(self) -> float:
        return 1.0 if self.uniform() < 0.5 else -1.0

    def integer(self, bounds: tuple[int, int]) -> int:
        """Uniform integer in [low, high], both ends included."""
        return min(bounds[0] + int(self.uniform() * (bounds[1] - bounds[0] + 1)), bounds[1])

    def normal(self, sd: float) -> float:
        # Box-Muller; 1 - u lies in (0, 1], so the logarithm is finite.
        return sd * math.sqrt(-2.0 * math.log(1.0 - self.uniform())) * math.cos(2.0 * math.pi * self.uniform())

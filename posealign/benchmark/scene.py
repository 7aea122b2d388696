"""One image's scene: every random draw before the camera's, in the order the images depend on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posealign.benchmark.background import sample_background
from posealign.benchmark.body_plans import HUMAN, BodyPlan
from posealign.benchmark.clutter import add_clutter
from posealign.benchmark.domains import DomainStyle
from posealign.benchmark.draws import Draws


@dataclass
class Scene:
    """Everything drawn for one image before rasterising; ``draws`` and ``rng`` continue into the camera."""

    rng: np.random.Generator
    draws: Draws
    keypoints: np.ndarray
    layers: np.ndarray
    background: np.ndarray
    grain: np.ndarray | None
    light: float


def sample_scene(rng: np.random.Generator, style: DomainStyle, size: int, body: BodyPlan = HUMAN) -> Scene:
    """Pose, figure, clutter and background of one image: every random draw before the camera's."""
    body.check_style(style)
    draws = Draws(rng)
    layers: list[tuple] = []
    points, scale = body.draw_figure(draws, style, layers, size)
    add_clutter(draws, style, layers, size, scale, body.limb_color)
    background, grain = sample_background(rng, draws, style, size)
    light = 0.6 * draws.sign()  # from the left or the right (and from the front)
    keypoints = np.array([(z.real, z.imag) for z in points], dtype=np.float32)
    return Scene(rng, draws, keypoints, np.array(layers, dtype=np.float64), background, grain, light)

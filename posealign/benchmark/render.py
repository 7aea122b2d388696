"""Rendering without writing anything: scene, rasteriser and camera for a batch of generators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posealign.benchmark.body_plans import HUMAN, BodyPlan
from posealign.benchmark.camera import apply_camera
from posealign.benchmark.domains import DomainStyle
from posealign.benchmark.rasterize import rasterize
from posealign.benchmark.scene import sample_scene


@dataclass
class RenderedFigure:
    """One rendered example.

    image: (S, S, 3) uint8. keypoints: (K, 2) float32 pixels, in the body plan's keypoint set.
    visible: (K,) bool (inside the image).
    bbox: (4,) x, y, w, h of the painted figure's pixels. figure_alpha: (S, S) float32 coverage by the figure.
    """

    image: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    bbox: np.ndarray
    figure_alpha: np.ndarray


def render_examples(
    rngs: list[np.random.Generator], style: DomainStyle, image_size: int = 64, body: BodyPlan = HUMAN
) -> list[RenderedFigure]:
    """Draw one ``body`` figure of ``style`` per generator; each image depends only on its own generator."""
    scenes = [sample_scene(rng, style, image_size, body) for rng in rngs]
    images, figure_alphas = rasterize(scenes, image_size)
    examples = []
    for scene, image, figure_alpha in zip(scenes, images, figure_alphas, strict=True):
        pixels = apply_camera(scene.rng, scene.draws, style, image)
        inside = (scene.keypoints >= 0).all(1) & (scene.keypoints <= image_size - 1).all(1)
        rows, cols = np.nonzero(figure_alpha > 0.5)
        if rows.size:
            bbox = np.array(
                [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1], dtype=np.float32
            )
        else:
            bbox = np.array([0, 0, image_size, image_size], dtype=np.float32)
        examples.append(RenderedFigure(pixels, scene.keypoints, inside, bbox, figure_alpha))
    return examples


def render_example(
    rng: np.random.Generator, style: DomainStyle, image_size: int = 64, body: BodyPlan = HUMAN
) -> RenderedFigure:
    """Draw one ``body`` figure of ``style`` on an ``image_size`` square image, all randomness from ``rng``."""
    return render_examples([rng], style, image_size, body)[0]

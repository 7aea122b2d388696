"""The camera: blur, uneven lighting, sensor noise, tone curve, colour cast and JPEG, in this order."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image
from scipy.ndimage import correlate1d

from posealign.benchmark.domains import DomainStyle
from posealign.benchmark.draws import Draws
from posealign.benchmark.geometry import pixel_grid, unit_direction


def apply_camera(rng: np.random.Generator, draws: Draws, style: DomainStyle, image: np.ndarray) -> np.ndarray:
    """Optics blur, uneven illumination, sensor noise, tone curve and colour cast, JPEG: (3, S, S) float -> (S, S, 3) uint8."""
    size = image.shape[1]
    sigma = draws.between(style.blur_sigma)
    if sigma > 0.05:  # separable Gaussian, truncated at 3 sigma (scipy's gaussian_filter without its overhead)
        offsets = np.arange(-int(3 * sigma + 0.5), int(3 * sigma + 0.5) + 1)
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        kernel /= kernel.sum()
        image = correlate1d(correlate1d(image, kernel, axis=1, mode="nearest"), kernel, axis=2, mode="nearest")
    if style.illumination_gradient > 0:
        xs, ys = pixel_grid(size)
        direction = unit_direction(draws.uniform(0, 360))
        ramp = ((xs - size / 2) * direction.real + (ys - size / 2) * direction.imag) / size  # about [-0.5, 0.5]
        image = image * (1 + draws.uniform(0, style.illumination_gradient) * ramp)
    noise = draws.between(style.noise_std)
    if noise > 0:  # uniform sensor noise of this standard deviation (cheaper to draw than Gaussian)
        image = image + (rng.random(image.shape, dtype=np.float32) - 0.5) * (noise * math.sqrt(12))
    pixels = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)

    # Tone curve as a lookup table: gamma, then contrast about the mean and brightness, then colour cast.
    gamma, contrast, brightness = (
        draws.between(style.gamma),
        draws.between(style.contrast),
        draws.between(style.brightness),
    )
    cast = [
        draws.uniform(1 - style.color_cast, 1 + style.color_cast) if style.color_cast > 0 else 1.0 for _ in range(3)
    ]
    if (gamma, contrast, brightness, *cast) != (1.0, 1.0, 0.0, 1.0, 1.0, 1.0):
        curve = (np.arange(256) / 255.0) ** gamma
        mean = float(np.bincount(pixels.reshape(-1), minlength=256) @ curve) / pixels.size
        curve = (curve - mean) * contrast + mean + brightness
        table = np.clip(np.outer(cast, curve) * 255 + 0.5, 0, 255).astype(np.uint8)  # (3, 256)
        pixels = np.stack([np.take(table[c], pixels[c]) for c in range(3)])
    pixels = np.ascontiguousarray(pixels.transpose(1, 2, 0))
    if draws.chance(style.jpeg_prob):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=draws.integer(style.jpeg_quality))
        pixels = np.asarray(Image.open(buffer).convert("RGB"))
    return pixels

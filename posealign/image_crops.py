"""An image file and the square crop of it the network sees: one way for training data and predict.

Both the datasets (``CroppedPoseDataset``) and ``posealign predict`` read images here and cut crops
here, so a model sees at prediction exactly the pixels it saw at evaluation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from posealign.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # what folder inputs are searched for


def read_rgb_image(
    path: str | Path, missing_fix: str, broken_fix: str, error: type[Exception] = UserError
) -> Image.Image:
    """An RGB image of at least 2 x 2 pixels, fully decoded, or ``error`` with one line naming the
    file and the fix (``missing_fix`` when it does not exist, ``broken_fix`` when it cannot be used)."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except FileNotFoundError:
        raise error(f"{path}: image file not found; {missing_fix}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as failure:
        raise error(f"{path}: cannot decode image ({type(failure).__name__}); {broken_fix}") from None
    if image.width < 2 or image.height < 2:
        raise error(f"{path}: image is {image.width}x{image.height}, at least 2x2 pixels are needed; {broken_fix}")
    return image


def crop_square(image: Image.Image, crop_box: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut the square ``crop_box`` (x, y, side, side) out of ``image`` (zeros outside it) and resize
    it to ``size`` x ``size``.

    Returns the crop (size, size, 3) uint8 and the integer box actually used (x, y, side, side),
    which maps crop pixels back: x_image = x + x_crop * side / size.
    """
    x, y, w, _ = (float(v) for v in crop_box)
    side = max(int(round(w)), 1)
    x0, y0 = int(round(x)), int(round(y))
    if image.mode != "RGB":
        image = image.convert("RGB")
    crop = image.crop((x0, y0, x0 + side, y0 + side))  # PIL pads outside the image with zeros
    if side != size:
        crop = crop.resize((size, size), Image.BILINEAR, reducing_gap=None)
    return np.asarray(crop, dtype=np.uint8), np.array([x0, y0, side, side], dtype=np.float32)

"""An image file and the square crop of it the network sees: one way for training data and predict.

Every image posealign reads goes through ``read_rgb_image`` (pixels) or ``read_image_size`` (the size a
dataset loader needs for its crop boxes): the datasets (``CroppedPoseDataset``), ``posealign
predict``, ``data inspect``, style training and the report's tiles. So a model sees at prediction
exactly the pixels it saw at evaluation, and every image is in the frame a viewer shows: a phone
stores a photo sideways with an EXIF orientation tag that every viewer applies, and so does
posealign (as OpenCV's ``imread``, and so mmpose, do). Keypoints, boxes and overlays are in that frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from posealign.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # what folder inputs are searched for
_SIDEWAYS = (5, 6, 7, 8)  # EXIF orientations that turn the stored image by 90 degrees: width and height swap


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1: stored as shown; 2..8: flipped and/or turned), 1 when absent."""
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block: shown as stored, as viewers do
        return 1


def read_image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as a viewer shows it, read from its header (no decoding for
    JPEG). Raises what ``PIL.Image.open`` raises for a missing or unreadable file."""
    with Image.open(path) as image:
        width, height = image.size
        return (height, width) if _exif_orientation(image) in _SIDEWAYS else (width, height)


def read_rgb_image(
    path: str | Path, missing_fix: str, broken_fix: str, error: type[Exception] = UserError
) -> Image.Image:
    """An RGB image of at least 2 x 2 pixels in the frame a viewer shows (its EXIF orientation applied),
    fully decoded, or ``error`` with one line naming the file and the fix (``missing_fix`` when it
    does not exist, ``broken_fix`` when it cannot be used)."""
    try:
        with Image.open(path) as image:
            if _exif_orientation(image) != 1:
                image = ImageOps.exif_transpose(image)
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


def mirror_crop(crop: np.ndarray, crop_box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A crop from ``crop_square`` flipped left-right, and the box that maps it back: a negative width
    starting at the square's right column, so x_image = x + x_crop * w / size still holds. The hand
    tasks train on left hands, right hands mirrored this way (``PoseRecord.mirror``);
    ``posealign predict --mirror`` flips a right hand the same way."""
    x, y, side, _ = (float(v) for v in crop_box)
    return crop[:, ::-1], np.array([x + side - 1.0, y, -side, side], dtype=np.float32)

"""Keypoints of every frame of a video as DeepLabCut writes them: the CSV table that the field's
analysis tools (``movement``, DeepLabCut's own, pandas) read.

Three header rows, ``scorer`` / ``bodyparts`` / ``coords``, whose first cell names the row; then one
column triple ``x``, ``y``, ``likelihood`` per keypoint and one row per frame, indexed by the frame
number (0-based). A frame without a pose (no box for it) has empty cells, as DeepLabCut writes NaN.
pandas reads it with ``pd.read_csv(path, header=[0, 1, 2], index_col=0)``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from posealign.files import atomic_replace


def _cell(value: float, digits: int) -> str:
    return "" if not math.isfinite(value) else repr(round(float(value), digits))


def write_deeplabcut_csv(
    path: Path, scorer: str, keypoint_names: tuple[str, ...], keypoints: np.ndarray, likelihood: np.ndarray
) -> None:
    """keypoints (F, K, 2) x, y in frame pixels and likelihood (F, K), NaN for a frame without a pose;
    written atomically (a previous file stays whole until the new one is complete)."""
    frames, count = likelihood.shape
    if keypoints.shape != (frames, count, 2) or len(keypoint_names) != count:
        raise ValueError(f"keypoints {keypoints.shape}, likelihood {likelihood.shape}, {len(keypoint_names)} names")
    with atomic_replace(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scorer", *[scorer] * (3 * count)])
        writer.writerow(["bodyparts", *[name for name in keypoint_names for _ in range(3)]])
        writer.writerow(["coords", *["x", "y", "likelihood"] * count])
        for frame in range(frames):
            cells = []
            for k in range(count):
                x, y = keypoints[frame, k]
                cells += [_cell(x, 3), _cell(y, 3), _cell(likelihood[frame, k], 5)]
            writer.writerow([frame, *cells])

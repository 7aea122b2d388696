"""Evaluation metrics."""

from posealign.metrics.pck import (
    DEFAULT_CURVE_THRESHOLDS,
    PCKAccumulator,
    PCKResult,
    pck_bbox,
    pck_curve,
    pck_legacy,
)

__all__ = ["DEFAULT_CURVE_THRESHOLDS", "PCKAccumulator", "PCKResult", "pck_bbox", "pck_curve", "pck_legacy"]

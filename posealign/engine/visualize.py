"""Kept only for ``engine/trainer.py``'s import; the code is in ``posealign.engine.prediction_tiles``."""

from posealign.engine.prediction_tiles import log_prediction_images  # noqa: F401 - re-exported for trainer.py

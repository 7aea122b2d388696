"""The settings of ``posealign style train`` (kept apart from the training code so the command line
can show their defaults without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StyleTrainingConfig:
    source: str
    target: str
    out: str
    encoder_weights: str | None = None  # None: random VGG (smoke tests only)
    steps: int = 160_000
    batch_size: int = 8
    image_size: int = 256
    lr: float = 1e-4
    lr_decay: float = 5e-5
    content_weight: float = 1.0
    style_weight: float = 0.1
    bidirectional: bool = True  # swap content/style roles with probability 0.5, as the release
    save_every: int = 1000
    log_every: int = 50
    grid_examples: int = 8
    workers: int = 2  # image-reading threads
    seed: int = 0
    device: str = "auto"  # auto: cuda when available
    resume: bool = False

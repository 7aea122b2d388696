"""Checkpoints: one dict with everything needed to continue, written with ``atomic_torch_save``
(a crash while writing leaves the previous checkpoint intact); their names, pruning and RNG states.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch

from posealign.files import load_torch_file

_NAME = re.compile(r"step_(\d+)\.pt$")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:07d}.pt"


def latest_checkpoint(directory: Path) -> Path | None:
    candidates = [(int(m.group(1)), p) for p in directory.glob("step_*.pt") if (m := _NAME.search(p.name))]
    return max(candidates)[1] if candidates else None


def prune_checkpoints(directory: Path, keep: int = 2) -> None:
    """Keep the newest ``keep`` step checkpoints (the final one is written elsewhere)."""
    candidates = sorted((int(m.group(1)), p) for p in directory.glob("step_*.pt") if (m := _NAME.search(p.name)))
    for _, path in candidates[:-keep]:
        path.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint to resume from. Not ``weights_only``: RNG states hold numpy arrays and Python
    tuples, and these files are our own, not untrusted input."""
    return load_torch_file(
        path,
        "checkpoint",
        "it may be truncated, use an older one",
        weights_only=False,
        missing_fix="pass an existing file or --resume auto",
    )

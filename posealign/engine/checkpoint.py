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
    """Every generator's state as tensors and plain data, so a checkpoint loads with ``weights_only``."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    # int64: a uint32 tensor does not survive the plain pickling of all_gather_object.
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian)
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]  # keys: a tensor, or a numpy array in checkpoints written before
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:07d}.pt"


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint ``--resume auto`` continues from: ``final.pt`` once training reached its end
    (the evaluation after it may not have finished), else the newest ``step_N.pt``."""
    if (directory / "final.pt").is_file():
        return directory / "final.pt"
    candidates = [(int(m.group(1)), p) for p in directory.glob("step_*.pt") if (m := _NAME.search(p.name))]
    return max(candidates)[1] if candidates else None


def prune_checkpoints(directory: Path, keep: int = 2) -> None:
    """Keep the newest ``keep`` step checkpoints (the final one is written elsewhere)."""
    candidates = sorted((int(m.group(1)), p) for p in directory.glob("step_*.pt") if (m := _NAME.search(p.name)))
    for _, path in candidates[:-keep]:
        path.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint to resume from (or a shared stage 1), read with ``weights_only`` like every
    torch file: a checkpoint holds tensors and plain data only, so one from elsewhere cannot run code."""
    return load_torch_file(
        path,
        "checkpoint",
        "it may be truncated, use an older one",
        missing_fix="pass an existing file or --resume auto",
    )

"""Checkpoints: one dict with everything needed to continue, written atomically.

A crash (or SIGKILL) while writing leaves the previous checkpoint intact: the file is written to a
temporary name in the same folder and renamed over, which POSIX makes atomic.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from posealign.errors import UserError

_NAME = re.compile(r"step_(\d+)\.pt$")


def atomic_torch_save(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


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
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; pass an existing file or --resume auto")
    try:
        # RNG states hold numpy arrays and Python tuples: these files are our own, not untrusted input.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001
        raise UserError(
            f"{path}: cannot read checkpoint ({type(error).__name__}: {error}); it may be truncated, use an older one"
        ) from None

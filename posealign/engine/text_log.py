"""RUN/train.log: the run's story in plain text, one timestamped line per event, as mmpose writes it.

metrics.jsonl is for programs; this file is for ``tail -f`` and for reading a finished run without
tools: the logged losses of each step, evaluations, resumptions and notes from the trainer.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

TEXT_LOG = "train.log"


def format_values(values: dict) -> str:
    """``loss=0.00123 lr=1.0e-03 stage=adapt``: numbers short, everything else as it is."""
    cells = []
    for name, value in values.items():
        if isinstance(value, float) and math.isfinite(value):
            cells.append(f"{name}={value:.4g}")
        else:
            cells.append(f"{name}={value}")
    return " ".join(cells)


class TextLog:
    """Appends timestamped lines to ``RUN/train.log``; does nothing when disabled (other ranks)."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / TEXT_LOG
        self.enabled = enabled

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    def metrics(self, step: int, kind: str, values: dict) -> None:
        self.line(f"step {step} [{kind}] {format_values(values)}")

"""SIGTERM and SIGINT during training: the step in flight finishes, every rank saves one checkpoint
at the same step, and the run stops with :class:`TrainingInterrupted` (``--resume auto`` goes on)."""

from __future__ import annotations

import signal

from posealign.engine.distributed import DistributedContext, any_rank


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was saved before stopping. ``signum`` says which (the
    command exits with 128 + signum, as a shell does)."""

    def __init__(self, message: str, signum: int = signal.SIGTERM) -> None:
        super().__init__(message)
        self.signum = int(signum)


class StopSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (the previous handlers come
    back on exit)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def requested(self, context: DistributedContext) -> bool:
        """A signal on any rank stops every rank at the same step (so they save one checkpoint together)."""
        stopping = any_rank(self.received is not None, context)
        if stopping and self.received is None:
            self.received = signal.SIGTERM
        return stopping

"""The per-run directory: resolved config, JSON-lines metrics, TensorBoard, checkpoints, results.

RUN/config.yaml         the resolved configuration
RUN/metrics.jsonl       one JSON object per logged step / evaluation
RUN/train.log           the same steps and evaluations (and trainer notes) as plain text
RUN/tensorboard/        scalars and prediction images
RUN/checkpoints/        step_XXXXXXX.pt (resumable), final.pt
RUN/results.json        the final numbers (written last)
RUN/train.lock          while a process trains here: its PID and host (see ``RunLock``)
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import socket
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posealign.config import check_same_behaviour, read_saved_config, resolved, save_config
from posealign.engine.text_log import TextLog
from posealign.errors import UserError
from posealign.files import atomic_write_text

# Keys that may differ between a run and its resumption without making it another run.
_RUN_KEYS_FREE_TO_CHANGE = (
    "progress",
    "num_workers",
    "log_every",
    "tensorboard",
    "out",
    "pretrain_cache",
    "checkpoint_every",
)


def comparable_config(config: DictConfig) -> dict:
    """The resolved config as a plain dict without the keys that may change between a run and its
    resumption: two configs with equal ``comparable_config`` describe the same run."""
    plain = OmegaConf.to_container(resolved(config))
    plain.pop("preset", None)
    for key in _RUN_KEYS_FREE_TO_CHANGE:
        plain.get("run", {}).pop(key, None)
    return plain


def load_saved_config(path: Path) -> DictConfig:
    """A run's saved ``config.yaml``, with every key added to ``configs/default.yaml`` since it was
    saved filled in with its default. A new option's default keeps the behaviour runs had before it
    existed, so the filled-in config still describes the run, and a run that sets the option
    otherwise is another run. The options whose default did not (by the file's ``format_version``)
    are filled with the value the run behaved as, and removed options are dropped
    (:func:`posealign.config.read_saved_config`)."""
    return read_saved_config(OmegaConf.load(path), str(path)).config


def check_run_directory(config: DictConfig, resume: bool) -> Path:
    """Check, writing nothing, that the run directory is free or holds this same run.

    An existing directory with another run's config is never written into: the user chooses
    another ``--out`` or removes it.
    """
    run_dir = Path(config.run.out)
    refuse_if_locked(run_dir)
    saved = run_dir / "config.yaml"
    if saved.is_file():
        saved_run = read_saved_config(OmegaConf.load(saved), str(saved))
        previous = saved_run.config
        if comparable_config(previous) != comparable_config(config):
            check_same_behaviour(saved_run, config)  # a default that changed since: say which, and how to keep it
            changed = _first_difference(comparable_config(previous), comparable_config(config))
            raise UserError(
                f"{run_dir}: holds a different run (differs at {changed}); choose another --out or delete it"
            )
        has_progress = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
        if has_progress and not resume:
            raise UserError(
                f"{run_dir}: already holds this run's checkpoints; pass --resume auto to continue it or choose another --out"
            )
    elif run_dir.exists() and any(path.name != LOCK_NAME for path in run_dir.iterdir()):
        raise UserError(
            f"{run_dir}: exists and is not a posealign run directory (no config.yaml); choose another --out"
        )
    return run_dir


def prepare_run_directory(config: DictConfig, resume: bool) -> Path:
    """Create the run directory with its ``config.yaml``, after the same checks as ``check_run_directory``."""
    run_dir = check_run_directory(config, resume)
    saved = run_dir / "config.yaml"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    save_config(config, saved)
    return run_dir


LOCK_NAME = "train.lock"


class RunLock:
    """The run folder's lock while a process trains in it: ``fcntl.flock`` on ``RUN/train.lock``,
    which holds the PID and host of the process. The operating system releases it when the process
    ends, however it ends; a clean exit also removes the file. Taking it creates the folder.

    Raises a one-line ``UserError`` naming the holder when another process has it. On a file system
    without ``flock`` the run goes on unlocked, after a warning.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    locked = _lock_or_name_holder(fd, self.path.parent, probe=False)
                except UserError:
                    os.close(fd)
                    raise
                if not locked:
                    os.close(fd)
                    return self  # no file locks here
                if _same_file(fd, self.path):
                    break
                os.close(fd)  # the previous holder removed the file between our open and our lock: again
            os.ftruncate(fd, 0)
            os.write(fd, f"{_this_process()}\n".encode())
        except OSError as error:
            raise UserError(
                f"{self.path.parent}: cannot create the run folder and its lock ({error.strerror or error}); "
                "choose another --out"
            ) from None
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        if _same_file(self._fd, self.path):
            self.path.unlink(missing_ok=True)  # before unlocking, so that no one locks a removed file
        os.close(self._fd)
        self._fd = None


def refuse_if_locked(run_dir: Path) -> None:
    """A ``UserError`` when another process holds ``run_dir``'s lock; writes nothing."""
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return  # no lock file: no one trains here
    try:
        _lock_or_name_holder(fd, Path(run_dir), probe=True)
    finally:
        os.close(fd)  # also releases the probe's shared lock


def _lock_or_name_holder(fd: int, run_dir: Path, probe: bool) -> bool:
    """Lock ``fd`` (shared when only probing), or raise the ``UserError`` naming the holder; False
    when the file system has no ``flock``. A holder that has not written its PID yet (or another
    process probing at that moment) gets a moment to do so."""
    for _ in range(20):
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if probe else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            holder = _read_holder(fd)
            if probe and holder == _this_process():
                return True  # this process's own lock (train checks the folder again under it)
            if holder:
                raise UserError(_locked_message(run_dir, holder)) from None
            time.sleep(0.05)
        except OSError as error:  # ENOLCK, EOPNOTSUPP: some network file systems
            if not probe:
                print(
                    f"posealign: warning: {run_dir}: no file lock here ({error.strerror}); nothing stops a second "
                    "process from training in this folder",
                    file=sys.stderr,
                )
            return False
    raise UserError(_locked_message(run_dir, ""))


def _locked_message(run_dir: Path, holder: str) -> str:
    pid, _, host = holder.partition(" ")
    who = f"PID {pid} on {host}" if host else f"PID {pid}" if pid else "PID not written"
    return (
        f"{run_dir}: another posealign process ({who}) is training in this folder; wait for it to end or "
        "stop it (it saves a checkpoint on SIGTERM), then --resume auto"
    )


def _this_process() -> str:
    return f"{os.getpid()} {socket.gethostname()}"


def _read_holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 256).decode(errors="replace").strip()


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk, opened = os.stat(path), os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)
    except FileNotFoundError:
        return False


def _first_difference(a, b, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return f"{prefix.rstrip('.')}: {a!r} -> {b!r}"


class MetricsLog:
    """JSON-lines metrics and the plain-text ``train.log`` (always), TensorBoard scalars (when
    enabled); main rank only."""

    def __init__(self, run_dir: Path, tensorboard: bool, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.text = TextLog(run_dir, enabled)
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, step: int, values: dict, prefix: str = "train") -> None:
        if not self.enabled:
            return
        # Wall-clock time (s since the epoch) of each line: step rates come from the log (benchmarks/end_to_end.py).
        record = {"step": step, "kind": prefix, "time": round(time.time(), 3), **values}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.text.metrics(step, prefix, values)
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def note(self, message: str) -> None:
        """A line of the trainer's own (start, resumption, end) in ``train.log``."""
        self.text.line(message)

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint so the log reads as one clean run
        (``train.log`` keeps its history and says where the run went on from)."""
        if not self.enabled:
            return
        self.text.line(f"resumed at step {step}; metrics logged after it were dropped from metrics.jsonl")
        if not self.path.is_file():
            return
        lines = self.path.read_text().splitlines()
        kept = [line for line in lines if (logged := _logged_step(line)) is not None and logged <= step]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _logged_step(line: str) -> int | None:
    """The step of a metrics line; None for a line cut short by a killed process."""
    try:
        return int(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return None

"""Several runs as one experiment (the demo, the ablation, a paper table): run each preset once,
reuse finished runs, and print the paper's table layout."""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from posealign.config import load_config, resolved
from posealign.cpus import usable_cpus
from posealign.engine.run_directory import comparable_config, load_saved_config
from posealign.errors import UserError


def split_overrides(names: list[str], overrides: list[str]) -> tuple[list[str], list[str]]:
    """argparse puts ``key=value`` words that follow ``--methods a b`` into that list; move them back."""
    return [n for n in names if "=" not in n], [*[n for n in names if "=" in n], *overrides]


def run_preset(preset: str, task: str | None, out: Path, overrides: list[str] | None = None) -> dict:
    """Train ``preset`` into ``out`` unless ``out`` already holds this run's results (then reuse)."""
    from posealign.engine.trainer import train

    config = load_config(preset, task, [*(overrides or []), f"run.out={out}"])
    results_file, config_file = out / "results.json", out / "config.yaml"
    if (
        results_file.is_file()
        and config_file.is_file()
        and comparable_config(load_saved_config(config_file)) == comparable_config(config)
    ):
        print(f"{config.method}: finished run found in {out}, reusing its results")
        return json.loads(results_file.read_text())
    has_checkpoints = (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("step_*.pt"))
    return train(config, resume="auto" if has_checkpoints else None)


@dataclass(frozen=True)
class PlannedRun:
    """One row of an experiment: a preset on a task, trained into ``out`` with ``overrides``."""

    preset: str
    task: str | None
    out: Path
    overrides: tuple[str, ...] = ()


class RunFailed(RuntimeError):
    """A run of an experiment failed with an unexpected error; the message names the run, the log
    that keeps its traceback, the runs stopped and the runs not started."""


def run_presets(planned: list[PlannedRun], jobs: int = 1, threads: int = 0) -> list[dict]:
    """The results of every planned run, in order; finished runs are reused.

    ``jobs`` > 1 trains runs side by side in that many worker processes, each with ``threads``
    torch threads (0: the cores divided among the jobs). On a small CPU, processes of one thread
    each do more work per second than one process of several threads (less synchronisation inside
    each convolution). A run that reuses another's stage 1 (``run.pretrain_cache``) starts when that
    stage 1 is in the cache (written whole, at the end of the producer's stage 1) or its producer has
    finished, so no stage 1 is trained twice and two adaptations from one stage 1 run side by side.

    When a run fails, the others stop at once (SIGTERM: each saves a checkpoint, so the same command
    continues them) and the error names the failed run's log, the runs stopped and those never
    started (a ``UserError`` when the run's own error was one). A run stopped by a signal stops the
    others the same way and its ``TrainingInterrupted`` is raised.
    """
    if jobs <= 1 or len(planned) <= 1:
        finished = []
        for index, run in enumerate(planned):
            try:
                finished.append(run_preset(run.preset, run.task, run.out, list(run.overrides)))
            except Exception as error:
                if _is_interrupted(error):
                    raise
                raise _failure(run, error, [], planned[index + 1 :]) from error
        return finished
    threads = threads or worker_threads(jobs)
    waits_for, priority, cache_files = _stage1_dependencies(planned)
    results: dict[int, dict] = {}
    running: dict[Future, int] = {}
    pending = list(range(len(planned)))
    context = get_context("spawn")  # a forked process would inherit torch's thread pools mid-state
    workers = _Workers(context)
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_start_worker, initargs=(threads, workers.pids)
    ) as pool:
        try:
            while pending or running:
                ready = [
                    i
                    for i in pending
                    if waits_for[i] is None
                    or waits_for[i] in results
                    or (cache_files[i] is not None and cache_files[i].is_file())
                ]
                for index in sorted(ready, key=lambda i: -priority[i]):  # the longest path first
                    if len(running) == jobs:
                        break
                    pending.remove(index)
                    run = planned[index]
                    overrides = [*run.overrides, "run.progress=false"]
                    running[pool.submit(_run_in_worker, run.preset, run.task, run.out, overrides)] = index
                # While a run waits for a stage 1 still in training, look for its cache file every few seconds.
                waiting = any(waits_for[i] is not None for i in pending)
                done, _ = wait(running, timeout=2.0 if waiting else None, return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    error = future.exception()
                    if error is not None:
                        _stop_the_others(planned, index, error, running, pending, workers)
                    results[index] = future.result()
                    print(f"{results[index]['method']}: done ({planned[index].out})", flush=True)
        except KeyboardInterrupt:
            # Workers ignore SIGINT outside their training loop (see _start_worker); SIGTERM stops
            # each one wherever it is, so none trains on unwatched while the pool waits for it.
            workers.signal(signal.SIGTERM, [planned[i].out for i in running.values()])
            raise
    return [results[i] for i in range(len(planned))]


def _stop_the_others(
    planned: list[PlannedRun],
    index: int,
    error: BaseException,
    running: dict[Future, int],
    pending: list[int],
    workers: _Workers,
) -> None:
    """Run ``index`` ended with ``error``: say so now, stop every running worker (each saves a
    checkpoint) and wait for them, then raise: the run's ``TrainingInterrupted``, or the failure."""
    run = planned[index]
    interrupted = _is_interrupted(error)
    if not interrupted:
        print(f"{run.preset}: failed ({run.out}): {_one_line(error)}; stopping the other runs", file=sys.stderr)
    # SIGTERM: a worker in its training loop saves a checkpoint and stops; one still setting up its
    # run (SIGINT ignored there) ends at once, with nothing to save yet.
    workers.signal(signal.SIGTERM, [planned[i].out for i in running.values()])
    wait(running)
    stopped = [planned[i] for future, i in running.items() if future.exception() is not None]
    not_run = [planned[i] for i in pending]
    if interrupted:
        if not_run:
            print(f"not started: {_names(not_run)}", file=sys.stderr)
        raise error
    raise _failure(run, error, stopped, not_run) from error


def _failure(run: PlannedRun, error: BaseException, stopped: list[PlannedRun], not_run: list[PlannedRun]) -> Exception:
    """The one-line error for a failed run, after its traceback is kept in its log."""
    from posealign.errors import DatasetFormatError

    log = _keep_traceback(run.out, error)
    message = f"{run.preset} ({run.out}) failed: {_one_line(error)} (traceback in {log})"
    if stopped:
        message += f"; stopped (the same command continues them): {_names(stopped)}"
    if not_run:
        message += f"; not started: {_names(not_run)}"
    if isinstance(error, UserError | DatasetFormatError | FileNotFoundError):
        return UserError(message)
    return RunFailed(message)


def _keep_traceback(out: Path, error: BaseException) -> Path:
    """Append ``error``'s traceback (a worker's included) to the run's ``train.log``; a run that failed
    before its folder was made gets ``OUT.error.log`` beside it (a folder without ``config.yaml``
    would block the corrected command)."""
    log = out / "train.log" if (out / "config.yaml").is_file() else out.parent / f"{out.name}.error.log"
    text = "".join(traceback.format_exception(error))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} failed:\n{text}")
    return log


def _names(runs: list[PlannedRun]) -> str:
    return ", ".join(f"{run.preset} ({run.out})" for run in runs)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _is_interrupted(error: BaseException) -> bool:
    """A training stopped by SIGINT/SIGTERM (its checkpoint saved), as a worker sends it back, or a
    Ctrl-C that came before the training loop."""
    from posealign.engine.interrupts import TrainingInterrupted

    return isinstance(error, TrainingInterrupted | KeyboardInterrupt)


class _Workers:
    """Which worker process trains which run (a worker says so when it starts one), to signal them."""

    def __init__(self, context) -> None:
        self.pids = context.SimpleQueue()
        self._pid_of: dict[str, int] = {}

    def signal(self, signum: int, runs: list[Path]) -> None:
        """Send ``signum`` to the workers training ``runs`` (not to idle ones: the pool would break)."""
        while not self.pids.empty():
            pid, out = self.pids.get()
            self._pid_of[out] = pid
        for out in runs:
            pid = self._pid_of.get(str(out))
            if pid is None:
                continue  # submitted but not yet started: the pool will not start it
            try:
                os.kill(pid, signum)
            except ProcessLookupError:  # a worker that has already gone
                pass


_worker_pids = None  # in a worker process: where it says which run it starts


def _start_worker(threads: int, pids) -> None:
    """A worker ignores Ctrl-C except inside a training loop, which saves a checkpoint and stops on it
    (the trainer's handler); elsewhere a KeyboardInterrupt would only kill an idle worker with a
    traceback, the parent stops them (:func:`run_presets`)."""
    global _worker_pids
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_pids = pids
    _set_threads(threads)


def _run_in_worker(preset: str, task: str | None, out: Path, overrides: list[str]) -> dict:
    _worker_pids.put((os.getpid(), str(out)))
    return run_preset(preset, task, out, overrides)


def worker_threads(jobs: int) -> int:
    """Torch threads per worker when ``jobs`` workers share the CPUs this process may use."""
    return max(1, usable_cpus() // max(1, jobs))


def _stage1_dependencies(planned: list[PlannedRun]) -> tuple[list[int | None], list[float], list[Path | None]]:
    """For each run, the earlier run that trains the stage 1 it reuses, or whose final checkpoint it
    starts from (``train.init``; None: it trains its own), its
    priority: its own cost in source-only steps (an adaptation step costs about three) plus the
    longest chain of runs waiting for it, so the longest path through the experiment starts first;
    and the file it waits for: its stage 1's cache (None without a cache), or that final checkpoint."""
    from posealign.engine.stage1_cache import pretraining_key, stage1_cache_file

    producers: dict[str, int] = {}
    finals = {str(run.out / "checkpoints" / "final.pt"): index for index, run in enumerate(planned)}
    waits_for: list[int | None] = []
    cost: list[float] = []
    cache_files: list[Path | None] = []
    for index, run in enumerate(planned):
        config = load_config(run.preset, run.task, [*run.overrides, f"run.out={run.out}"])
        cache_files.append(stage1_cache_file(config))
        pretrain, adapt = int(config.train.pretrain_steps), int(config.train.adapt_steps)
        adapt = adapt if config.mean_teacher.enabled else 0
        key = pretraining_key(config) if config.run.pretrain_cache and pretrain else None
        init = str(config.train.get("init"))
        if init in finals:  # a source-free run starts from another run's final checkpoint
            waits_for.append(finals[init])
            cache_files[-1] = Path(init)
            cost.append(3.0 * adapt)
            continue
        waits_for.append(producers.get(key) if key else None)
        if key:
            producers.setdefault(key, index)
        cost.append((pretrain if waits_for[-1] is None else 0) + 3.0 * adapt)
    priority = list(cost)
    for index in reversed(range(len(planned))):  # a producer comes before the runs that wait for it
        if waits_for[index] is not None:
            producer = waits_for[index]
            priority[producer] = max(priority[producer], cost[producer] + priority[index])
    return waits_for, priority, cache_files


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def config_for(preset: str, task: str | None, overrides: list[str] | None = None):
    return resolved(load_config(preset, task, overrides))


def format_table(
    rows: dict[str, dict],
    groups: list[str],
    domain: str = "target",
    spreads: dict[str, dict] | None = None,
    first_column: str = "Method",
) -> str:
    """Rows = methods (or what ``first_column`` names), columns = groups + All, PCK in percent
    (``mean ± std`` when spreads given)."""
    width = max([20, *(len(name) + 2 for name in rows)])  # long row names keep the columns aligned
    header = f"{first_column:<{width}}" + "".join(f"{g:>14}" for g in [*groups, "All"])
    lines = [header, "-" * len(header)]
    for name, result in rows.items():
        numbers = result.get(domain)
        if numbers is None:
            continue
        cells = []
        for group in [*groups, "All"]:
            value = numbers["pck"] if group == "All" else numbers["groups"].get(group)
            if spreads and name in spreads:
                spread = spreads[name].get(group)
                cells.append(f"{value:7.1f} ± {spread:4.1f}" if value is not None else "-")
            else:
                cells.append(f"{value:.1f}" if value is not None else "-")
        lines.append(f"{name:<{width}}" + "".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)


def mean_and_spread(per_seed: list[dict], groups: list[str], domain: str = "target") -> tuple[dict, dict]:
    """Mean result and per-column standard deviation over seeds (sample std; 0 for one seed)."""
    columns = {g: [r[domain]["groups"][g] for r in per_seed] for g in groups}
    columns["All"] = [r[domain]["pck"] for r in per_seed]
    mean = {
        domain: {"pck": statistics.fmean(columns["All"]), "groups": {g: statistics.fmean(columns[g]) for g in groups}}
    }
    spread = {g: (statistics.stdev(v) if len(v) > 1 else 0.0) for g, v in columns.items()}
    return mean, spread


def gap_closed(rows: dict[str, dict], domain: str = "target") -> dict[str, float]:
    """Percent of the source-only -> oracle gap each other row closes: (m - so) / (oracle - so) x 100.

    Empty when either end is missing or the oracle is not above source-only.
    """
    if "source_only" not in rows or "oracle" not in rows:
        return {}
    low, high = rows["source_only"][domain]["pck"], rows["oracle"][domain]["pck"]
    if high <= low:
        return {}
    return {
        name: 100.0 * (row[domain]["pck"] - low) / (high - low)
        for name, row in rows.items()
        if name not in ("source_only", "oracle") and domain in row
    }


def domain_gaps(per_row: dict[str, list[dict]]) -> dict[str, list[float]]:
    """Per row, each seed's proxy A-distance (``results.json["domain_gap"]``); rows with a run that has
    none (runs saved without the measurement, or splits under 4 crops) are left out rather than averaged short."""
    gaps = {}
    for name, results in per_row.items():
        values = [(r.get("domain_gap") or {}).get("proxy_a_distance") for r in results]
        if values and None not in values:
            gaps[name] = values
    return gaps


def format_domain_gaps(gaps: dict[str, list[float]]) -> str:
    """One line: each row's proxy A-distance, mean ± std over seeds (2: every crop told apart)."""
    cells = ", ".join(
        f"{name} {statistics.fmean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.2f}"
        for name, v in gaps.items()
    )
    return (
        "proxy A-distance, source vs target test crops at the deconv features (0: alike to a linear probe, "
        f"2: every crop told apart): {cells}"
        if gaps
        else ""
    )


def format_gap_closed(shares: dict[str, float]) -> str:
    cells = ", ".join(f"{name} {share:.0f} %" for name, share in shares.items())
    return f"share of the source-only -> oracle gap closed: {cells}" if shares else ""

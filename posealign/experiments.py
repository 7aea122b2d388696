"""Several runs as one experiment (the demo, the ablation, a paper table): run each preset once,
reuse finished runs, and print the paper's table layout."""

from __future__ import annotations

import json
import os
import statistics
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from posealign.config import load_config, resolved
from posealign.cpus import usable_cpus
from posealign.engine.run_directory import comparable_config, load_saved_config


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


def run_presets(planned: list[PlannedRun], jobs: int = 1, threads: int = 0) -> list[dict]:
    """The results of every planned run, in order; finished runs are reused.

    ``jobs`` > 1 trains runs side by side in that many worker processes, each with ``threads``
    torch threads (0: the cores divided among the jobs). On a small CPU, processes of one thread
    each do more work per second than one process of several threads (less synchronisation inside
    each convolution). A run that reuses another's stage 1 (``run.pretrain_cache``) starts when that
    stage 1 is in the cache (written whole, at the end of the producer's stage 1) or its producer has
    finished, so no stage 1 is trained twice and two adaptations from one stage 1 run side by side.
    """
    if jobs <= 1 or len(planned) <= 1:
        return [run_preset(p.preset, p.task, p.out, list(p.overrides)) for p in planned]
    threads = threads or worker_threads(jobs)
    waits_for, priority, cache_files = _stage1_dependencies(planned)
    results: dict[int, dict] = {}
    running: dict[Future, int] = {}
    pending = list(range(len(planned)))
    context = get_context("spawn")  # a forked process would inherit torch's thread pools mid-state
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_set_threads, initargs=(threads,)
    ) as pool:
        while pending or running:
            ready = [i for i in pending if waits_for[i] is None or waits_for[i] in results or cache_files[i].is_file()]
            for index in sorted(ready, key=lambda i: -priority[i]):  # the longest path first
                if len(running) == jobs:
                    break
                pending.remove(index)
                run = planned[index]
                running[
                    pool.submit(run_preset, run.preset, run.task, run.out, [*run.overrides, "run.progress=false"])
                ] = index
            # While a run waits for a stage 1 still in training, look for its cache file every few seconds.
            waiting = any(waits_for[i] is not None for i in pending)
            done, _ = wait(running, timeout=2.0 if waiting else None, return_when=FIRST_COMPLETED)
            for future in done:
                index = running.pop(future)
                results[index] = future.result()  # a worker's error (or TrainingInterrupted) surfaces here
                print(f"{results[index]['method']}: done ({planned[index].out})", flush=True)
    return [results[i] for i in range(len(planned))]


def worker_threads(jobs: int) -> int:
    """Torch threads per worker when ``jobs`` workers share the CPUs this process may use."""
    return max(1, usable_cpus() // max(1, jobs))


def _stage1_dependencies(planned: list[PlannedRun]) -> tuple[list[int | None], list[float], list[Path | None]]:
    """For each run, the earlier run that trains the stage 1 it reuses (None: it trains its own), its
    priority: its own cost in source-only steps (an adaptation step costs about three) plus the
    longest chain of runs waiting for it, so the longest path through the experiment starts first;
    and the cache file of its stage 1 (None without a cache)."""
    from posealign.engine.stage1_cache import pretraining_key, stage1_cache_file

    producers: dict[str, int] = {}
    waits_for: list[int | None] = []
    cost: list[float] = []
    cache_files: list[Path | None] = []
    for index, run in enumerate(planned):
        config = load_config(run.preset, run.task, [*run.overrides, f"run.out={run.out}"])
        cache_files.append(stage1_cache_file(config))
        pretrain, adapt = int(config.train.pretrain_steps), int(config.train.adapt_steps)
        adapt = adapt if config.mean_teacher.enabled else 0
        key = pretraining_key(config) if config.run.pretrain_cache and pretrain else None
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
    rows: dict[str, dict], groups: list[str], domain: str = "target", spreads: dict[str, dict] | None = None
) -> str:
    """Rows = methods, columns = groups + All, PCK in percent (``mean ± std`` when spreads given)."""
    width = max([20, *(len(name) + 2 for name in rows)])  # long row names keep the columns aligned
    header = f"{'Method':<{width}}" + "".join(f"{g:>14}" for g in [*groups, "All"])
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
    none (runs from before stop 24, or splits under 4 crops) are left out rather than averaged short."""
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

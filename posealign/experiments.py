"""Several runs as one experiment (the demo, the ablation, a paper table): run each preset once,
reuse finished runs, and print the paper's table layout."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from omegaconf import OmegaConf

from posealign.config import load_config, resolved
from posealign.engine.run_directory import comparable_config


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
        and comparable_config(OmegaConf.load(config_file)) == comparable_config(config)
    ):
        print(f"{config.method}: finished run found in {out}, reusing its results")
        return json.loads(results_file.read_text())
    has_checkpoints = (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("step_*.pt"))
    return train(config, resume="auto" if has_checkpoints else None)


def config_for(preset: str, task: str | None, overrides: list[str] | None = None):
    return resolved(load_config(preset, task, overrides))


def format_table(
    rows: dict[str, dict], groups: list[str], domain: str = "target", spreads: dict[str, dict] | None = None
) -> str:
    """Rows = methods, columns = groups + All, PCK in percent (``mean ± std`` when spreads given)."""
    header = f"{'Method':<20}" + "".join(f"{g:>14}" for g in [*groups, "All"])
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
        lines.append(f"{name:<20}" + "".join(f"{c:>14}" for c in cells))
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


def format_gap_closed(shares: dict[str, float]) -> str:
    cells = ", ".join(f"{name} {share:.0f} %" for name, share in shares.items())
    return f"share of the source-only -> oracle gap closed: {cells}" if shares else ""

"""The paper's Fig. 2 as an experiment: target PCK against each setting swept by ``posealign
ablate --vary KEY=V1,V2,...``, each run of the grid trained as any other run of an ablation.

Each key is swept on its own, the others held at the preset's values, as Fig. 2 varies each weight
of eq. 8 with the other two at the chosen ones: a full product would multiply the runs (27 for three
weights of three values each, against 7) and the figure draws one curve per key anyway. The value a
preset already has is one run, ``seedS/PRESET``, shared by every key's curve, so each curve passes
through the same point; the other values train into ``seedS/KEY=VALUE``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posealign.errors import UserError
from posealign.experiments import PlannedRun

SENSITIVITY_FILE = "sensitivity.json"
# Keys the experiment sets itself for every run: sweeping them would break its folders or its seeds.
EXPERIMENT_KEYS = {
    "run.seed": "--seeds and --first-seed choose the seeds",
    "run.out": "--out chooses the folder",
    "run.pretrain_cache": "the runs of a sweep share one stage 1 cache",
    "data.benchmark_root": "the runs of a sweep share one benchmark",
}


@dataclass(frozen=True)
class Sweep:
    """One ``--vary KEY=V1,V2,...``: the values as typed (each becomes a ``KEY=V`` override)."""

    key: str
    values: tuple[str, ...]


def parse_vary(items: list[str]) -> list[Sweep]:
    """``--vary`` arguments as sweeps; a malformed one, or a key or value given twice, is one line."""
    sweeps: list[Sweep] = []
    for item in items:
        key, equals, listed = item.partition("=")
        key = key.strip()
        values = tuple(value.strip() for value in listed.split(","))
        example = "e.g. --vary align.pose.weight=0.1,0.3,1.0"
        if not equals or not key:
            raise UserError(f"--vary {item}: expected KEY=V1,V2,... ({example})")
        if "" in values:
            raise UserError(f"--vary {item}: an empty value; separate the values by single commas ({example})")
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise UserError(f"--vary {item}: {', '.join(repeated)} listed twice; list each value once")
        if key in (sweep.key for sweep in sweeps):
            raise UserError(f"--vary {key}: given twice; put all its values in one --vary {key}=V1,V2,...")
        if key in EXPERIMENT_KEYS:
            raise UserError(f"--vary {key}: not a setting to sweep ({EXPERIMENT_KEYS[key]})")
        sweeps.append(Sweep(key, values))
    return sweeps


def typed_value(text: str):
    """A value as a ``key=value`` override reads it (YAML: ``1e-2`` is text, ``0.01`` a number)."""
    return OmegaConf.from_dotlist([f"value={text}"]).value


def run_name(preset: str, key: str, value: str, preset_config: DictConfig) -> str:
    """The run folder of ``key=value`` in each seed's folder: the preset's own run where the preset
    already has that value (``0.30`` for a preset's 0.3 included)."""
    return preset if typed_value(value) == OmegaConf.select(preset_config, key) else f"{key}={value}"


def value_overrides(key: str, value: str, preset: str, preset_config: DictConfig) -> list[str]:
    """The override a value's runs add: none for the preset's own value, so the run is the preset's."""
    return [] if run_name(preset, key, value, preset_config) == preset else [f"{key}={value}"]


def plan_grid(
    sweeps: list[Sweep],
    preset: str,
    task: str | None,
    out: Path,
    shared: list[str],
    seeds: range,
    preset_config: DictConfig,
) -> list[PlannedRun]:
    """Every run of the grid once, seed by seed: the preset's own run, then each other value of each key."""
    planned: dict[Path, PlannedRun] = {}
    for seed in seeds:
        folder = out / f"seed{seed}"
        base = (*shared, f"run.seed={seed}")
        planned[folder / preset] = PlannedRun(preset, task, folder / preset, base)
        for sweep in sweeps:
            for value in sweep.values:
                name = run_name(preset, sweep.key, value, preset_config)
                extra = value_overrides(sweep.key, value, preset, preset_config)
                planned.setdefault(folder / name, PlannedRun(preset, task, folder / name, (*base, *extra)))
    return list(planned.values())


def summarize(
    sweeps: list[Sweep],
    preset: str,
    preset_config: DictConfig,
    out: Path,
    seeds: range,
    results: dict[Path, dict],
) -> list[dict]:
    """Per key, per value (in the order given): its runs (relative to ``out``), target PCK per seed
    and mean ± sample std (0 for one seed), and the same on ``target_val`` where every run has it."""
    summary = []
    for sweep in sweeps:
        points = []
        for value in sweep.values:
            name = run_name(preset, sweep.key, value, preset_config)
            runs = [out / f"seed{seed}" / name for seed in seeds]
            point = {"value": value, "runs": [str(run.relative_to(out)) for run in runs]}
            for domain in ("target", "target_val"):
                per_seed = [results[run][domain]["pck"] for run in runs if domain in results[run]]
                if len(per_seed) < len(runs):
                    continue  # a split some run did not evaluate: no mean over fewer seeds
                point[f"{domain}_per_seed"] = per_seed
                point[domain] = statistics.fmean(per_seed)
                point[f"{domain}_std"] = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
            points.append(point)
        preset_value = OmegaConf.select(preset_config, sweep.key)
        summary.append({"key": sweep.key, "preset_value": _plain(preset_value), "points": points})
    return summary


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def format_sensitivity(summary: list[dict], preset: str) -> str:
    """One block per key: each value's target PCK (the reported split) and target_val (for choosing
    settings), mean ± std; the preset's value marked."""
    lines = []
    labels = [len(point["value"]) + len(preset) + 6 for sweep in summary for point in sweep["points"]]
    width = max(24, *labels, *(len(sweep["key"]) + 2 for sweep in summary))
    for sweep in summary:
        lines.append(f"{sweep['key']:<{width}}{'target':>16}{'target_val':>16}")
        lines.append("-" * (width + 32))
        for point in sweep["points"]:
            own = typed_value(point["value"]) == sweep["preset_value"]
            label = f"  {point['value']}" + (f" ({preset})" if own else "")
            cells = [
                f"{point[domain]:7.1f} ± {point[f'{domain}_std']:4.1f}" if domain in point else "-"
                for domain in ("target", "target_val")
            ]
            lines.append(f"{label:<{width}}" + "".join(f"{cell:>16}" for cell in cells))
        lines.append("")
    return "\n".join(lines).rstrip()

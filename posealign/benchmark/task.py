"""The built-in benchmarks as tasks: generate the one a config names (``data.benchmark_body``, human
by default) where the config expects it, once."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posealign.benchmark.body_plans import BODY_PLANS
from posealign.benchmark.generate import benchmark_is_complete, benchmark_is_upgradable, generate_benchmark
from posealign.cpus import usable_cpus
from posealign.errors import UserError


def ensure_benchmark(config: DictConfig) -> Path:
    """Generate the benchmark at ``data.benchmark_root`` unless a complete copy with the same
    parameters is already there (generation is seeded and deterministic).

    A complete benchmark made with other parameters is never regenerated in place: the runs beside
    it were evaluated on it, and their ``eval`` would silently change. One made before a split was
    added to the generator (``target_val``) gets just that split: its other files do not change.
    """
    root = Path(config.data.benchmark_root)
    sizes = (
        OmegaConf.to_container(config.data.benchmark_sizes, resolve=True)
        if config.data.get("benchmark_sizes")
        else None
    )
    image_size, seed = int(config.data.image_size), int(config.data.get("benchmark_seed", 0))
    body = str(config.data.get("benchmark_body", "human"))
    if body not in BODY_PLANS:
        raise UserError(f"data.benchmark_body={body}: choose one of {sorted(BODY_PLANS)}")
    drawn = BODY_PLANS[body].keypoint_set.name
    if config.data.get("keypoint_set") != drawn:
        raise UserError(
            f"data.benchmark_body={body} draws {drawn} keypoints but data.keypoint_set is "
            f"{config.data.get('keypoint_set')}; use the task made for it (--task benchmark, benchmark_quadruped or benchmark_hand)"
        )
    marker = root / "benchmark.json"
    settled = benchmark_is_complete(root, image_size, sizes, seed, body=body) or benchmark_is_upgradable(
        root, image_size, sizes, seed, body=body
    )
    if marker.is_file() and not settled:
        raise UserError(
            f"{root}: holds a benchmark made with other parameters ({_describe(marker)}); runs evaluated on it "
            "would change. Pass data.benchmark_root=ANOTHER_FOLDER, or delete the folder to regenerate it"
        )
    # The files are identical for any number of rendering processes.
    return generate_benchmark(root, image_size=image_size, sizes=sizes, seed=seed, workers=usable_cpus(), body=body)


def _describe(marker: Path) -> str:
    try:
        written = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return "unreadable benchmark.json"
    return (
        f"body {written.get('body', 'human')}, image_size {written.get('image_size')}, sizes {written.get('sizes')}, "
        f"seed {written.get('seed')}"
    )

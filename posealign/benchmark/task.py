"""The built-in benchmark as a task: generate it where the config expects it, once."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posealign.benchmark.generate import generate_benchmark


def ensure_benchmark(config: DictConfig) -> Path:
    """Generate the benchmark at ``data.benchmark_root`` unless a complete copy with the same
    parameters is already there (generation is seeded and deterministic)."""
    root = Path(config.data.benchmark_root)
    sizes = (
        OmegaConf.to_container(config.data.benchmark_sizes, resolve=True)
        if config.data.get("benchmark_sizes")
        else None
    )
    return generate_benchmark(
        root, image_size=int(config.data.image_size), sizes=sizes, seed=int(config.data.get("benchmark_seed", 0))
    )

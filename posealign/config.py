"""Configuration: the defaults, a method preset, a task preset and ``key=value`` overrides.

Resolution order (later wins): ``configs/default.yaml`` <- method preset (``configs/presets``,
following its ``inherit`` chain) <- task preset (``configs/tasks``: data, model size, schedule) <-
command-line overrides. The resolved config is saved as ``config.yaml`` in every run directory.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posealign.errors import UserError
from posealign.files import atomic_write_text

CONFIG_ROOT = resources.files("posealign") / "configs"


def available_presets() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in (CONFIG_ROOT / "presets").iterdir() if p.name.endswith(".yaml"))


def available_tasks() -> list[str]:
    # Files starting with an underscore are shared parts that tasks inherit, not tasks themselves.
    return sorted(
        p.name.removesuffix(".yaml")
        for p in (CONFIG_ROOT / "tasks").iterdir()
        if p.name.endswith(".yaml") and not p.name.startswith("_")
    )


def _read_yaml(kind: str, name: str) -> DictConfig:
    """A preset by name (from the package) or by path (a user's own YAML)."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return OmegaConf.load(candidate)
    path = CONFIG_ROOT / kind / f"{name}.yaml"
    if not path.is_file():
        known = available_presets() if kind == "presets" else available_tasks()
        raise UserError(f"unknown {kind[:-1]} {name!r}; choose one of {known} or give a path to a YAML file")
    return OmegaConf.load(str(path))


def _preset_chain(kind: str, name: str) -> DictConfig:
    """A preset merged over the presets it inherits from (``inherit: other``)."""
    node = _read_yaml(kind, name)
    parent = node.pop("inherit", None)
    if parent is None:
        return node
    return OmegaConf.merge(_preset_chain(kind, parent), node)


def load_config(preset: str = "source_only", task: str | None = None, overrides: list[str] | None = None) -> DictConfig:
    """The resolved configuration for a method preset on a task, with ``key=value`` overrides."""
    layers = [OmegaConf.load(str(CONFIG_ROOT / "default.yaml")), _preset_chain("presets", preset)]
    if task:
        layers.append(_preset_chain("tasks", task))
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (e.g. train.batch_size=16)")
    layers.append(OmegaConf.from_dotlist(list(overrides or [])))
    config = OmegaConf.merge(*layers)
    if config.get("run") is not None and config.run.get("amp") is False:
        config.run.amp = "off"  # YAML 1.1 reads an unquoted `run.amp=off` as the boolean false
    config.preset = preset
    if config.data.get("benchmark_root"):
        # `${run.out}/../benchmark` names a folder beside the run; collapse the `..` now, before the
        # run directory exists, or the operating system cannot follow it.
        config.data.benchmark_root = os.path.normpath(str(config.data.benchmark_root))
    config.task = task
    return config


def resolved(config: DictConfig) -> DictConfig:
    """A copy with every ``${...}`` interpolation resolved (what gets saved and compared)."""
    copy = OmegaConf.create(OmegaConf.to_container(config, resolve=True))
    return copy


def save_config(config: DictConfig, path: str | Path) -> None:
    atomic_write_text(path, OmegaConf.to_yaml(resolved(config)))

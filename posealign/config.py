"""Configuration: the defaults, a method preset, a task preset and ``key=value`` overrides.

Resolution order (later wins): ``configs/default.yaml`` <- task preset (``configs/tasks``: data,
model size, schedule, and method defaults scaled to them) <- method preset (``configs/presets``,
following its ``inherit`` chain) <- command-line overrides. A preset's method settings thus win over
a task's (``daml_plus``'s ``align.feature.lr`` over the benchmark's), and a task's data and model
stand because presets do not set them. The resolved config is saved as ``config.yaml`` in every
run directory, under its ``format_version``, and read back over today's defaults by
:func:`read_saved_config`.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
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
    """A preset merged over the presets it inherits from: ``inherit: other``, or ``inherit: [a, b]``
    for several parents merged in that order (b's values win over a's, the preset's own over both)."""
    node = _read_yaml(kind, name)
    parents = node.pop("inherit", None)
    if parents is None:
        return node
    merged = OmegaConf.create()
    for parent in [parents] if isinstance(parents, str) else list(parents):
        merged = OmegaConf.merge(merged, _preset_chain(kind, parent))
    return OmegaConf.merge(merged, node)


# Subtrees whose keys are free: a dataset's own options, extra labeled splits to evaluate, the
# paper's reference numbers of a task.
_FREE_FORM = ("data.source.options", "data.target.options", "data.eval", "reference")


def _flat_keys(node, prefix: str = "") -> dict[str, object]:
    """Every key path of a plain container -> its value (dicts are walked, lists are leaves)."""
    keys: dict[str, object] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        keys[path] = value
        if isinstance(value, dict) and not path.startswith(_FREE_FORM):
            keys.update(_flat_keys(value, path + "."))
    return keys


def _is_free(path: str) -> bool:
    """Below a free-form subtree (the subtree itself is an ordinary key)."""
    return any(path.startswith(free + ".") for free in _FREE_FORM)


# Keys whose default is ``auto`` (decided per device), which a preset or task may set to true or false.
_AUTO_OR_BOOL = ("run.channels_last",)


def _type_error(path: str, expected, given) -> str | None:
    """Why ``given`` cannot stand where the defaults hold ``expected``; None when it can."""
    if expected is None or given is None or (isinstance(given, str) and "${" in given):
        return None  # unset by default, or an interpolation resolved later
    if path in _AUTO_OR_BOOL and given == "auto":
        return None  # config_checks refuses anything but auto, true and false
    checks = (
        (bool, lambda v: isinstance(v, bool), "true or false"),
        (int, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
        (float, lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
        (list, lambda v: isinstance(v, list), "a list like [1, 2]"),
        (dict, lambda v: isinstance(v, dict), "a mapping like {key: value}"),
    )
    for kind, accepts, wording in checks:
        if isinstance(expected, kind):
            return None if accepts(given) else f"config key {path!r} must be {wording}, got {given!r}"
    return None


def check_layer(layer: DictConfig, known: DictConfig, origin: str) -> None:
    """Every key of ``layer`` must exist in ``known`` with a value of the same kind.

    A mistyped key would otherwise train silently with the default (``mean_teacher.momentun=0.5``);
    the one-line error names the key, the closest known one and where every key is listed.
    """
    known_keys = _flat_keys(OmegaConf.to_container(known, resolve=False))
    for path, value in _flat_keys(OmegaConf.to_container(layer, resolve=False)).items():
        if path in known_keys:
            problem = _type_error(path, known_keys[path], value)
            if problem:
                raise UserError(f"{origin}: {problem}")
        elif not _is_free(path):
            close = difflib.get_close_matches(path, list(known_keys), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(
                f"{origin}: unknown config key {path!r}{hint}; every key is listed in posealign/configs/default.yaml"
            )


def load_config(preset: str = "source_only", task: str | None = None, overrides: list[str] | None = None) -> DictConfig:
    """The resolved configuration for a method preset on a task, with ``key=value`` overrides.

    Layers, later ones winning: the defaults, the task, the method preset, the command line.
    Method presets and overrides may only set keys that exist (in the defaults, or added by the
    task, which may declare its own ``data`` keys such as its roots); values keep the defaults' kind.
    """
    config = OmegaConf.load(str(CONFIG_ROOT / "default.yaml"))
    method = _preset_chain("presets", preset)
    check_layer(method, config, f"preset {preset!r}")
    if task:
        config = OmegaConf.merge(config, _preset_chain("tasks", task))
    # The method's own settings come after the task's: a task scales the defaults to its data and
    # budget, and must not silently undo what a preset says (``daml_plus``'s l_adv, ``fast``'s
    # discriminator stride were both replaced by the task's values when tasks came last).
    config = OmegaConf.merge(config, method)
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (e.g. train.batch_size=16)")
    command_line = OmegaConf.from_dotlist(list(overrides or []))
    if command_line.get("run") is not None and command_line.run.get("amp") is False:
        command_line.run.amp = "off"  # YAML 1.1 reads an unquoted `run.amp=off` as the boolean false
    check_layer(command_line, config, "command line")
    config = OmegaConf.merge(config, command_line)
    _replace_whole_entries(config, command_line, overrides or [])
    config.preset = preset
    if config.data.get("benchmark_root"):
        # `${run.out}/../benchmark` names a folder beside the run; collapse the `..` now, before the
        # run directory exists, or the operating system cannot follow it.
        config.data.benchmark_root = os.path.normpath(str(config.data.benchmark_root))
    config.task = task
    for name in [name for name, spec in config.data.eval.items() if spec is None]:
        del config.data.eval[name]  # `data.eval.source=null`: that split is not evaluated
    return config


def _is_dataset_entry(path: str) -> bool:
    """``data.source``, ``data.target``, ``data.eval.NAME`` or the ``options`` of one of them."""
    parts = path.split(".")
    if parts[-1] == "options":
        parts = parts[:-1]
    return parts in (["data", "source"], ["data", "target"]) or (len(parts) == 3 and parts[:2] == ["data", "eval"])


def _replace_whole_entries(config: DictConfig, command_line: DictConfig, overrides: list[str]) -> None:
    """A dataset entry (or its options) given whole on the command line replaces the task's one
    instead of being merged into it: ``options: {}`` means no options, not the task's options."""
    for item in overrides:
        path = item.partition("=")[0].strip()
        if _is_dataset_entry(path):
            OmegaConf.update(config, path, OmegaConf.select(command_line, path), merge=False)


def resolved(config: DictConfig) -> DictConfig:
    """A copy with every ``${...}`` interpolation resolved (what gets saved and compared)."""
    copy = OmegaConf.create(OmegaConf.to_container(config, resolve=True))
    return copy


# The layout of a saved config (``config.yaml``, a checkpoint's): its ``format_version`` (1: written
# without one). It goes up when an option's default stops being what runs saved without the option did.
CONFIG_FORMAT_VERSION = 2

# Keys whose default is not what runs saved before them did: format -> {key: the value that
# behaves as those runs did}. A config of an older format without the key ran with that value.
_BEHAVIOUR_BEFORE = {
    2: {
        "mean_teacher.student_batchnorm": "joint",  # the student ran once over both domains' batch
        "mean_teacher.consistency_mask": "zero_outside",  # L_cons zeroed outside the overlap, mean over all pixels
    },
}

# Options that no longer exist, with the value runs had when they left the option alone: a saved
# config that holds one at that value ran as runs do now; at another value, it used what is gone.
REMOVED_OPTIONS = {
    "align.feature.warmup": 0.0,
    "align.feature.layer": "deconv",
    "align.feature.spectral_norm": False,
    "align.feature.decide_per": "pixel",
    "align.feature.joint_forward": False,
    "align.pose.distribution": "axes",
    "align.pose.temperature": 1.0,
    "optim.adapt_grad_clip": None,
    "align.image.per_sample": False,
    "align.image.patch_size": 4,
}


def config_text(config: DictConfig) -> str:
    """The resolved config as YAML: what a run saves as ``config.yaml`` and ``posealign config`` prints."""
    return f"format_version: {CONFIG_FORMAT_VERSION}\n" + OmegaConf.to_yaml(resolved(config))


def save_config(config: DictConfig, path: str | Path) -> None:
    atomic_write_text(path, config_text(config))


@dataclass
class SavedConfig:
    """A saved config read for comparison with today's: ``config`` is it over today's defaults;
    ``ran_with`` holds the keys it was saved without whose default changed since, at the value the
    run behaved as (also in ``config``), so it never compares equal to a config with the new default."""

    config: DictConfig
    ran_with: dict[str, object]
    origin: str


def read_saved_config(
    saved: DictConfig | dict, origin: str, format_version: int | None = None, defaults: DictConfig | None = None
) -> SavedConfig:
    """``saved`` (a run's resolved config; ``origin`` names its file in messages) made comparable
    with a config of today (``defaults``: ``configs/default.yaml``). Its format is ``format_version``,
    else its own ``format_version`` key, else 1. An option removed from the defaults is dropped at
    the value runs had without it, and refused at another (a UserError: the run used what no longer
    exists)."""
    saved = OmegaConf.create(saved if isinstance(saved, dict) else OmegaConf.to_container(saved))
    written = saved.pop("format_version", None)
    version = int(format_version if format_version is not None else written if written is not None else 1)
    if version > CONFIG_FORMAT_VERSION:
        raise UserError(
            f"{origin}: saved in config format {version}, this posealign reads up to {CONFIG_FORMAT_VERSION}; update posealign"
        )
    if defaults is None:
        defaults = OmegaConf.load(str(CONFIG_ROOT / "default.yaml"))
    for key, value in REMOVED_OPTIONS.items():
        if OmegaConf.select(defaults, key, default=_ABSENT) is not _ABSENT:
            continue  # still an option here
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(saved, parent, default=None)
        if not isinstance(node, DictConfig) or leaf not in node:
            continue
        if node[leaf] != value:
            raise UserError(
                f"{origin}: the run used {key}={node[leaf]}, an option that no longer exists; rerun it into another --out"
            )
        del node[leaf]
    ran_with = {}
    for since, keys in _BEHAVIOUR_BEFORE.items():
        if version >= since:
            continue
        for key, value in keys.items():
            if OmegaConf.select(saved, key, default=_ABSENT) is _ABSENT:
                OmegaConf.update(saved, key, value, force_add=True)
                ran_with[key] = value
    return SavedConfig(OmegaConf.merge(defaults, saved), ran_with, origin)


def check_same_behaviour(saved: SavedConfig, config: DictConfig) -> None:
    """A UserError when ``config`` would continue or stand for ``saved`` with a default that changed
    since the run was saved; names each such key, its old and new behaviour, and how to keep the old."""
    changed = {key: value for key, value in saved.ran_with.items() if OmegaConf.select(config, key) != value}
    if not changed:
        return
    defaults = OmegaConf.load(str(CONFIG_ROOT / "default.yaml"))
    keys = " and ".join(
        f"{key} (whose default changed from {value} to {OmegaConf.select(defaults, key)})"
        for key, value in changed.items()
    )
    keep = " ".join(f"{key}={value}" for key, value in changed.items())
    raise UserError(
        f"{saved.origin} was saved without {keys}: rerun it into another --out (or delete it), or pass {keep} to keep its behaviour"
    )


_ABSENT = object()

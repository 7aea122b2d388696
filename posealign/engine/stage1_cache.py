"""Stage 1 shared between runs: ``run.pretrain_cache/pretrain_<key>.pt``, where the key covers
every setting stage 1 depends on. A preset that finds its stage 1 there starts at stage 2; the
first run to finish a stage 1 puts it there."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posealign.config import resolved
from posealign.engine.checkpoint import load_checkpoint
from posealign.engine.training_state import TrainingState


def pretraining_key(config: DictConfig, world_size: int = 1) -> str:
    """What stage 1 depends on: two runs with the same key share one source pretraining.

    The number of ranks is part of it: each rank's data position and RNG state are saved, and the
    effective batch is batch_size x ranks.
    """
    plain = OmegaConf.to_container(resolved(config))
    relevant = {
        "data": {
            k: plain["data"][k] for k in ("source", "target", "image_size", "heatmap_size", "sigma", "keypoint_set")
        },
        "model": plain["model"],
        # Only what stage 1 trains with: the milestones within it, not stage 2's starting lr.
        "optim": {
            **{k: v for k, v in plain["optim"].items() if k != "adapt_lr"},
            "milestones": [m for m in plain["optim"]["milestones"] if m <= plain["train"]["pretrain_steps"]],
        },
        "augment": plain["augment"],
        "run": {**{k: plain["run"][k] for k in ("seed", "amp", "channels_last")}, "world_size": world_size},
        "train": {
            k: plain["train"][k] for k in ("batch_size", "supervised_on", "pretrain_steps", "pretrain_image_level")
        },
        "image_level": plain["align"]["image"]
        if plain["train"]["pretrain_image_level"] and plain["align"]["image"]["enabled"]
        else None,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def stage1_cache_file(config: DictConfig, world_size: int = 1) -> Path | None:
    """This run's entry in ``run.pretrain_cache``; None when the run shares no stage 1."""
    if not config.run.pretrain_cache:
        return None
    key = pretraining_key(config, world_size)
    return Path(config.run.pretrain_cache) / f"pretrain_{key}.pt"


def reuse_stage1(training: TrainingState, cache_file: Path) -> None:
    """Continue from the cached end of stage 1, as if this run had trained it.

    The cache is shared by runs whose LR milestones after stage 1 differ (the key holds only those
    within it), so the scheduler keeps this run's milestones and takes the rest of its state (step
    count, last LR) from the cache; the optimiser's LR is the cached one, decayed at the same steps.
    """
    state = load_checkpoint(cache_file)
    # Stage 1 never trains the discriminator, and the key does not cover its settings: this run
    # keeps the one it built (the same initialisation as the cached run's when the settings match).
    state.update(discriminator=None, discriminator_optimizer=None, pose_temperature=None)
    own_milestones = training.scheduler.state_dict()["milestones"]
    state["scheduler"] = {**state["scheduler"], "milestones": own_milestones}
    training.load_state_dict(state)


def keep_stage1(training: TrainingState, cache_file: Path | None, step: int) -> None:
    """End of stage 1: keep it in the shared cache (unless there already) so other presets start from it."""
    if cache_file is not None and not cache_file.is_file():
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        training.save(step, cache_file)

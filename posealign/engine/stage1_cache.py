"""Stage 1 shared between runs: ``run.pretrain_cache/pretrain_<key>.pt``, where the key covers
every setting stage 1 depends on. A preset that finds its stage 1 there starts at stage 2; the
first run to finish a stage 1 puts it there.

A run that reuses an entry ends exactly where training its own stage 1 would have: the entry holds
everything stage 1 leaves behind (networks, optimiser, schedule, gradient scaler, RNG states, the
labeled stream's position, the target style cache), a fingerprint of the data it read (checked on
reuse), and the target stream is placed where a run with one stands after stage 1: a run that reads
target images draws one target batch at every step, whether or not stage 1 uses it, while the run
that wrote the entry may have had no target stream at all (``source_only`` for ``mean_teacher``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from posealign.config import resolved
from posealign.engine.checkpoint import load_checkpoint
from posealign.engine.distributed import barrier
from posealign.engine.training_state import TrainingState
from posealign.files import atomic_torch_save

# Part of the key: entries written under another layout (or a narrower key) are never found.
_ENTRY_FORMAT = 2
# Keys of ``data`` that choose what stage 1 reads; the built-in benchmark's regenerate its images
# under the same root (absent in tasks on other data).
_DATA_KEYS = ("source", "target", "image_size", "heatmap_size", "sigma", "keypoint_set")
_BENCHMARK_KEYS = ("benchmark_sizes", "benchmark_seed", "benchmark_body")
_RUN_KEYS = ("seed", "amp", "channels_last", "sync_batchnorm", "device", "compile", "compile_backend")


def pretraining_key(config: DictConfig, world_size: int = 1) -> str:
    """What stage 1 depends on: two runs with the same key share one source pretraining.

    The number of ranks is part of it: each rank's data position and RNG state are saved, and the
    effective batch is batch_size x ranks. The data files themselves are checked on reuse
    (:func:`data_fingerprint`).
    """
    plain = OmegaConf.to_container(resolved(config))
    relevant = {
        "format": _ENTRY_FORMAT,
        "data": {
            **{k: plain["data"][k] for k in _DATA_KEYS},
            **{k: plain["data"].get(k) for k in _BENCHMARK_KEYS},
        },
        "model": plain["model"],
        # Only what stage 1 trains with: the milestones within it, not stage 2's starting lr.
        "optim": {
            **{k: v for k, v in plain["optim"].items() if k != "adapt_lr"},
            "milestones": [m for m in plain["optim"]["milestones"] if m <= plain["train"]["pretrain_steps"]],
        },
        "augment": plain["augment"],
        "run": {**{k: plain["run"].get(k) for k in _RUN_KEYS}, "world_size": world_size},
        "train": {
            k: plain["train"][k] for k in ("batch_size", "supervised_on", "pretrain_steps", "pretrain_image_level")
        },
        "image_level": plain["align"]["image"] if _stylizes_stage1(config) else None,
    }
    if plain["train"].get("init"):  # stage 1 starts from that model: its bytes, not its path, decide
        relevant["init"] = _file_digest(Path(plain["train"]["init"]))
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stylizes_stage1(config: DictConfig) -> bool:
    """Stage 1 restyles source images as target images (and so reads the target split)."""
    return bool(config.train.pretrain_image_level and config.align.image.enabled)


def data_fingerprint(training: TrainingState) -> str:
    """A digest of the annotations stage 1 trains on (image paths, keypoints, visibility, boxes of
    the labeled split, and of the target split when stage 1 stylizes with it): a dataset rewritten
    under the same root and split (a regenerated benchmark, re-exported annotations) differs."""
    datasets = [training.labeled_stream.dataset]
    if _stylizes_stage1(training.config) and training.target_stream is not None:
        datasets.append(training.target_stream.dataset)
    digest = hashlib.sha256()
    for cropped in datasets:
        records = cropped.dataset.records
        digest.update(f"{len(records)}\n".encode())
        for record in records:
            digest.update(str(record.image).encode() + (b"\nmirror\n" if record.mirror else b"\n"))
            for array in (record.keypoints, record.visible, record.bbox, record.crop_box):
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def stage1_cache_file(config: DictConfig, world_size: int = 1) -> Path | None:
    """This run's entry in ``run.pretrain_cache``; None when the run shares no stage 1."""
    if not config.run.pretrain_cache or int(config.train.pretrain_steps) == 0:
        return None  # a run without a stage 1 (source-free: it starts from train.init) shares none
    key = pretraining_key(config, world_size)
    return Path(config.run.pretrain_cache) / f"pretrain_{key}.pt"


def reuse_stage1(training: TrainingState, cache_file: Path) -> str | None:
    """Continue from the cached end of stage 1, as if this run had trained it; returns None, or
    why the entry cannot stand for this run's stage 1 (then nothing was loaded).

    The cache is shared by runs whose LR milestones after stage 1 differ (the key holds only those
    within it), so the scheduler keeps this run's milestones and takes the rest of its state (step
    count, last LR) from the cache; the optimiser's LR is the cached one, decayed at the same steps.
    """
    state = load_checkpoint(cache_file)
    fingerprint = data_fingerprint(training)
    if state.get("data_fingerprint") != fingerprint:
        return f"{cache_file} was trained on other data (annotations changed since); training stage 1 here"
    # Stage 1 never trains the discriminator, and the key does not cover its settings: this run
    # keeps the one it built (the same initialisation as the cached run's when the settings match).
    state.update(discriminator=None, discriminator_optimizer=None, pose_temperature=None)
    own_milestones = training.scheduler.state_dict()["milestones"]
    state["scheduler"] = {**state["scheduler"], "milestones": own_milestones}
    training.load_state_dict(state)
    if training.target_stream is not None:
        # One target batch per stage-1 step, as this run would have drawn them (the entry's run may
        # have read no target images).
        training.target_stream.skip_to(int(state["step"]))
    return None


def keep_stage1(training: TrainingState, cache_file: Path | None, step: int) -> None:
    """End of stage 1: keep it in the shared cache (unless there already) so other presets start from it."""
    if cache_file is None or cache_file.is_file():
        return
    payload = training.state_dict(step)  # every rank joins the RNG gather
    if training.context.is_main:
        payload["data_fingerprint"] = data_fingerprint(training)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(payload, cache_file)
    barrier(training.context)

"""Everything a training step changes, and its checkpoint: one dict that resumes a run exactly
(networks, optimisers, scheduler, gradient scaler, each rank's RNG, the data streams' positions,
the target style cache, the resolved config and the keypoint set)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from posealign.config import CONFIG_FORMAT_VERSION, check_same_behaviour, read_saved_config, resolved
from posealign.engine.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    rng_state,
)
from posealign.engine.data import BatchStream
from posealign.engine.distributed import DistributedContext, barrier
from posealign.errors import UserError
from posealign.files import atomic_torch_save
from posealign.keypoints import KeypointSet
from posealign.models.unwrap import unwrap_model
from posealign.multilevel_alignment import MultiLevelAlignment
from posealign.pose_model_files import keypoint_set_to_saved


@dataclass
class TrainingState:
    """The run's moving parts; ``method.student`` and ``method.discriminator`` may be wrapped (DDP,
    torch.compile), checkpoints hold the plain networks."""

    config: DictConfig
    context: DistributedContext
    method: MultiLevelAlignment
    optimizer: torch.optim.Optimizer
    discriminator_optimizer: torch.optim.Optimizer | None
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    labeled_stream: BatchStream | None  # None in a source-free run: no labeled image is read
    target_stream: BatchStream | None
    keypoint_set: KeypointSet

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.config.run.out) / "checkpoints"

    def state_dict(self, step: int) -> dict:
        """The checkpoint after ``step`` steps (every rank must call it: it gathers their RNG states)."""
        method = self.method
        return {
            "format_version": CONFIG_FORMAT_VERSION,  # of "config" below
            "step": step,
            "student": unwrap_model(method.student).state_dict(),
            "teacher": method.teacher.state_dict() if method.teacher is not None else None,
            "discriminator": unwrap_model(method.discriminator).state_dict()
            if method.discriminator is not None
            else None,
            "optimizer": self.optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict()
            if self.discriminator_optimizer
            else None,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": _gather_rng_states(self.context),
            "data": {
                "labeled": self.labeled_stream.state_dict() if self.labeled_stream else None,
                "target": self.target_stream.state_dict() if self.target_stream else None,
            },
            "style_cache": method.style_cache,
            "pose_temperature": method.pose_temperature if method.needs_temperature_calibration else None,
            "source_pose_prior": method.source_pose_prior,
            "config": OmegaConf.to_container(resolved(self.config)),
            "keypoint_set": keypoint_set_to_saved(self.keypoint_set),
        }

    def load_state_dict(self, state: dict) -> None:
        method = self.method
        unwrap_model(method.student).load_state_dict(state["student"])
        if method.teacher is not None and state.get("teacher") is not None:
            method.teacher.load_state_dict(state["teacher"])
        if method.discriminator is not None and state.get("discriminator") is not None:
            unwrap_model(method.discriminator).load_state_dict(state["discriminator"])
            self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.labeled_stream is not None:
            self.labeled_stream.load_state_dict(state["data"]["labeled"])
        if self.target_stream is not None and state["data"].get("target") is not None:
            self.target_stream.load_state_dict(state["data"]["target"])
        # Saved on the CPU (torch.load maps there); the step multiplies them with device tensors.
        device = self.context.device
        method.style_cache = {
            index: tuple(t.to(device) for t in stats) for index, stats in (state.get("style_cache") or {}).items()
        }
        if state.get("source_pose_prior") is not None:
            method.source_pose_prior = state["source_pose_prior"]
        if method.needs_temperature_calibration and state.get("pose_temperature") is not None:
            # Calibrated when stage 2 began; without calibration tau stays 1.
            method.pose_temperature = float(state["pose_temperature"])
        rng = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        if len(rng) == self.context.world_size:
            restore_rng_state(rng[self.context.rank])
        else:
            # Saved by another number of ranks: each rank draws a stream of its own from rank 0's state.
            restore_rng_state(rng[0])
            torch.manual_seed(int(torch.randint(2**62, ())) + self.context.rank)

    def save(self, step: int, path: Path | None = None) -> None:
        """Rank 0 writes the checkpoint (default: ``checkpoints/step_N.pt``, older ones pruned); all ranks wait."""
        payload = self.state_dict(step)  # every rank joins the RNG gather
        if self.context.is_main:
            atomic_torch_save(payload, path or checkpoint_path(self.checkpoint_dir, step))
            if path is None:
                prune_checkpoints(self.checkpoint_dir)
        barrier(self.context)

    def restore(self, path: Path) -> tuple[int, int]:
        """Load the checkpoint at ``path``; returns its step and the number of ranks that wrote it.
        A checkpoint of another run is a UserError."""
        state = load_checkpoint(path)
        _check_same_keypoints(state, self.keypoint_set, path)
        if state.get("config") is not None:
            # A checkpoint saved before a default changed continues only with its old behaviour.
            saved = read_saved_config(state["config"], str(path), int(state.get("format_version", 1)))
            check_same_behaviour(saved, self.config)
        _check_pose_temperature(state, self.method, int(self.config.train.pretrain_steps), path)
        try:
            self.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as error:
            detail = " ".join(str(error).split()) or type(error).__name__  # torch's message spans lines
            detail = detail if len(detail) <= 300 else detail[:300] + "..."
            raise UserError(
                f"{path}: checkpoint does not fit this run's networks ({detail}); resume with a checkpoint of the same config"
            ) from None
        return int(state["step"]), len(state["rng"]) if isinstance(state["rng"], list) else 1


def _gather_rng_states(context: DistributedContext) -> list[dict]:
    """Every rank's RNG state, so a resumed multi-process run continues each rank's stream."""
    state = rng_state()
    if not context.enabled:
        return [state]
    states: list[dict] = [None] * context.world_size  # type: ignore[list-item]
    torch.distributed.all_gather_object(states, state)
    return states


def _check_same_keypoints(state: dict, keypoint_set: KeypointSet, path: Path) -> None:
    saved = state.get("keypoint_set", {}).get("names")
    if saved is not None and list(saved) != list(keypoint_set.names):
        raise UserError(
            f"{path}: checkpoint is for keypoint set {state['keypoint_set']['name']!r} ({len(saved)} keypoints), this run uses {keypoint_set.name!r}; use a matching checkpoint"
        )


def _check_pose_temperature(state: dict, method: MultiLevelAlignment, pretrain_steps: int, path: Path) -> None:
    """A stage-2 checkpoint of a run whose pose temperature is calibrated must carry that temperature:
    without it the pose level would go on at the config's tau (1: where its gradient all but vanishes),
    and recalibrating on the partly adapted network would give another tau than the run had."""
    if not method.needs_temperature_calibration or state.get("pose_temperature") is not None:
        return
    step = int(state["step"])
    if step > pretrain_steps:  # at the end of stage 1 the temperature is calibrated when stage 2 begins
        raise UserError(
            f"{path}: checkpoint of stage 2 (step {step}) holds no calibrated pose temperature "
            "(align.pose.calibrate_temperature_to), so its run cannot go on as it was; resume from a "
            f"checkpoint of stage 1 (step {pretrain_steps} or before) or train again"
        )

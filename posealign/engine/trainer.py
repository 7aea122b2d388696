"""The training loop, top to bottom: data, networks, optimisers, (resume), steps, evaluation.

Stage 1 ("pretrain", ``train.pretrain_steps``) trains the student on the labeled domain; stage 2
("adapt", ``train.adapt_steps``) runs the mean teacher with the enabled alignment levels. A
matching stage 1 found in ``run.pretrain_cache`` is reused instead of being trained again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import signal
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from posealign.config import resolved
from posealign.engine.checkpoint import (
    atomic_torch_save,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    rng_state,
)
from posealign.engine.data import BatchStream, build_dataset, run_keypoint_set, to_batch
from posealign.engine.distributed import (
    DistributedContext,
    any_rank,
    average_buffers,
    barrier,
    cleanup_distributed,
    mean_across_ranks,
    setup_distributed,
)
from posealign.engine.evaluate import evaluate
from posealign.engine.run_directory import (
    MetricsLog,
    check_run_directory,
    prepare_run_directory,
    write_json_atomic,
)
from posealign.errors import UserError
from posealign.multilevel_alignment import MultiLevelAlignment, NonFiniteLossError


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was saved before stopping."""


def pretraining_key(config: DictConfig) -> str:
    """What stage 1 depends on: two runs with the same key share one source pretraining."""
    plain = OmegaConf.to_container(resolved(config))
    relevant = {
        "data": {
            k: plain["data"][k] for k in ("source", "target", "image_size", "heatmap_size", "sigma", "keypoint_set")
        },
        "model": plain["model"],
        "optim": {
            **plain["optim"],
            "milestones": [m for m in plain["optim"]["milestones"] if m <= plain["train"]["pretrain_steps"]],
        },
        "augment": plain["augment"],
        "run": {k: plain["run"][k] for k in ("seed", "amp", "channels_last")},
        "train": {
            k: plain["train"][k] for k in ("batch_size", "supervised_on", "pretrain_steps", "pretrain_image_level")
        },
        "image_level": plain["align"]["image"]
        if plain["train"]["pretrain_image_level"] and plain["align"]["image"]["enabled"]
        else None,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _autocast(config: DictConfig, device: torch.device):
    if config.run.amp == "off":
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.run.amp)
    if dtype is None:
        raise UserError(f"run.amp must be off, bf16 or fp16, not {config.run.amp!r}")
    return torch.autocast(device_type=device.type, dtype=dtype)


class _StopSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (then saves and exits)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous = {}

    def __enter__(self) -> _StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(config: DictConfig, resume: str | None = None) -> dict:
    """Train a run as configured and return its results (also written to ``RUN/results.json``).

    resume: None (fresh run), ``"auto"`` (latest checkpoint of the run directory, fresh if none) or
    a checkpoint path.
    """
    context = setup_distributed(config.run.device)
    try:
        return _train(config, resume, context)
    finally:
        cleanup_distributed(context)


def _train(config: DictConfig, resume: str | None, context: DistributedContext) -> dict:
    device = context.device
    torch.manual_seed(int(config.run.seed) + context.rank)
    run_dir = Path(config.run.out)
    if context.is_main:
        check_run_directory(config, resume is not None)  # fail fast, before loading any data
    say = print if context.is_main else (lambda *a, **k: None)

    # -- data ------------------------------------------------------------------------------------
    labeled_role = "target" if config.train.supervised_on == "target" else "source"
    labeled_set = build_dataset(config.data[labeled_role], config, labeled_role)
    adapting = bool(config.mean_teacher.enabled) and int(config.train.adapt_steps) > 0
    needs_target = adapting or (config.align.image.enabled and config.train.pretrain_image_level)
    target_set = build_dataset(config.data.target, config, "target") if needs_target else None
    eval_sets = {name: build_dataset(spec, config, f"eval.{name}") for name, spec in config.data.eval.items()}
    keypoint_set = run_keypoint_set(config, [labeled_set, *([target_set] if target_set else []), *eval_sets.values()])

    batch_size = int(config.train.batch_size)
    seed = int(config.run.seed)
    workers, pin = int(config.run.num_workers), device.type == "cuda"
    labeled_stream = BatchStream(labeled_set, batch_size, seed, context.rank, context.world_size, workers, pin)
    target_stream = (
        BatchStream(target_set, batch_size, seed + 1, context.rank, context.world_size, workers, pin)
        if target_set
        else None
    )
    # Written only now: a run stopped by bad data leaves no config.yaml that the corrected run would clash with.
    if context.is_main:
        prepare_run_directory(config, resume is not None)
    barrier(context)
    log = MetricsLog(run_dir, bool(config.run.tensorboard), enabled=context.is_main)

    # -- networks and optimisers -----------------------------------------------------------------
    method = MultiLevelAlignment(
        config, keypoint_set.num_keypoints, on_any_rank=functools.partial(any_rank, context=context)
    ).to(device)
    if config.run.channels_last:
        method.to(memory_format=torch.channels_last)
    if context.enabled and config.run.sync_batchnorm:
        method.student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method.student)
    student = method.student
    optimizer = torch.optim.Adam(student.parameters(), lr=float(config.optim.lr))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, list(config.optim.milestones), float(config.optim.gamma)
    )
    discriminator_optimizer = None
    if method.discriminator is not None:
        discriminator_optimizer = torch.optim.Adam(method.discriminator.parameters(), lr=float(config.align.feature.lr))
    scaler = torch.amp.GradScaler(device.type, enabled=config.run.amp == "fp16")
    if context.enabled:
        ids = [device.index] if device.type == "cuda" else None
        method.student = DistributedDataParallel(student, device_ids=ids)
        if method.discriminator is not None:
            method.discriminator = DistributedDataParallel(method.discriminator, device_ids=ids)
    if config.run.compile:
        method.student = torch.compile(method.student)
    # Stage 1 draws the same random numbers whatever networks this preset built above (daml's
    # discriminator initialisation would shift them), so stage 1 trained here equals a cached one.
    torch.manual_seed(int(config.run.seed) + context.rank)

    pretrain_steps = int(config.train.pretrain_steps)
    total_steps = pretrain_steps + (int(config.train.adapt_steps) if adapting else 0)
    step = 0

    def state_dict(current_step: int) -> dict:
        return {
            "step": current_step,
            "student": student.state_dict(),
            "teacher": method.teacher.state_dict() if method.teacher is not None else None,
            "discriminator": _plain(method.discriminator).state_dict() if method.discriminator is not None else None,
            "optimizer": optimizer.state_dict(),
            "discriminator_optimizer": discriminator_optimizer.state_dict() if discriminator_optimizer else None,
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": _gather_rng_states(context),
            "data": {
                "labeled": labeled_stream.state_dict(),
                "target": target_stream.state_dict() if target_stream else None,
            },
            "style_cache": method.style_cache,
            "config": OmegaConf.to_container(resolved(config)),
            "keypoint_set": {
                "name": keypoint_set.name,
                "names": list(keypoint_set.names),
                "skeleton": [list(p) for p in keypoint_set.skeleton],
            },
        }

    def load_state(state: dict) -> None:
        student.load_state_dict(state["student"])
        if method.teacher is not None and state.get("teacher") is not None:
            method.teacher.load_state_dict(state["teacher"])
        if method.discriminator is not None and state.get("discriminator") is not None:
            _plain(method.discriminator).load_state_dict(state["discriminator"])
            discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        labeled_stream.load_state_dict(state["data"]["labeled"])
        if target_stream is not None and state["data"].get("target") is not None:
            target_stream.load_state_dict(state["data"]["target"])
        method.style_cache = state.get("style_cache") or {}
        rng = state["rng"]
        restore_rng_state(rng[context.rank] if isinstance(rng, list) else rng)

    def save(current_step: int, path: Path | None = None) -> None:
        payload = state_dict(current_step)  # every rank joins the RNG gather
        if context.is_main:
            atomic_torch_save(payload, path or checkpoint_path(run_dir / "checkpoints", current_step))
            if path is None:
                prune_checkpoints(run_dir / "checkpoints")
        barrier(context)

    # -- resume, or reuse a matching stage 1 -----------------------------------------------------
    if resume is not None:
        path = latest_checkpoint(run_dir / "checkpoints") if resume == "auto" else Path(resume)
        if path is not None:
            state = load_checkpoint(path)
            _check_same_keypoints(state, keypoint_set, path)
            try:
                load_state(state)
            except (KeyError, RuntimeError, ValueError) as error:
                detail = " ".join(str(error).split()) or type(error).__name__  # torch's message spans lines
                detail = detail if len(detail) <= 300 else detail[:300] + "..."
                raise UserError(
                    f"{path}: checkpoint does not fit this run's networks ({detail}); resume with a checkpoint of the same config"
                ) from None
            step = int(state["step"])
            log.truncate_after(step)
            say(f"resumed from {path} at step {step}")
    cache_file = None
    if config.run.pretrain_cache:
        cache_file = Path(config.run.pretrain_cache) / f"pretrain_{pretraining_key(config)}.pt"
        if step == 0 and pretrain_steps > 0 and cache_file.is_file():
            load_state(load_checkpoint(cache_file))
            step = pretrain_steps
            # The cached scheduler carries the milestones of the run that made it; those after
            # stage 1 are this run's own.
            scheduler.milestones = Counter(int(m) for m in config.optim.milestones)
            decays = sum(int(m) <= step for m in config.optim.milestones)
            for group in optimizer.param_groups:
                group["lr"] = float(config.optim.lr) * float(config.optim.gamma) ** decays
            say(f"reusing stage 1 from {cache_file}")
            if adapting:
                method.start_adaptation()

    effective = batch_size * context.world_size
    say(
        f"{config.method}: {total_steps} steps ({pretrain_steps} pretrain + {total_steps - pretrain_steps} adapt), "
        f"batch {batch_size} x {context.world_size} rank(s) = {effective} per domain, lr {config.optim.lr}, device {device}"
    )

    # -- the loop --------------------------------------------------------------------------------
    method.set_train_mode()
    started = time.time()
    progress = tqdm(
        total=total_steps,
        initial=step,
        disable=not (config.run.progress and context.is_main),
        dynamic_ncols=True,
        desc=str(config.method),
    )
    with _StopSignal() as stop:
        while step < total_steps:
            stage = "pretrain" if step < pretrain_steps else "adapt"
            if stage == "adapt" and step == pretrain_steps:
                _finish_pretraining(save, cache_file, step, context)
                method.start_adaptation()
            labeled = to_batch(next(labeled_stream), device, config.run.channels_last)
            target = (
                to_batch(next(target_stream), device, config.run.channels_last)
                if target_stream and (stage == "adapt" or needs_target)
                else None
            )

            optimizer.zero_grad(set_to_none=True)
            if discriminator_optimizer is not None:
                discriminator_optimizer.zero_grad(set_to_none=True)
            # A diverging forward overwrites BatchNorm statistics before its loss is checked.
            buffers_before = [b.detach().clone() for b in method.buffers()]
            try:
                with _autocast(config, device):
                    logs = method.forward_backward(
                        labeled,
                        target,
                        stage,
                        progress=max(step - pretrain_steps, 0) / max(total_steps - pretrain_steps, 1),
                        step=step,
                        scaler=scaler,
                    )
            except NonFiniteLossError as error:
                # Parameters and optimiser states are still those of the last good step; the buffers are put back.
                torch._foreach_copy_(list(method.buffers()), buffers_before)
                save(step)
                raise UserError(
                    f"{checkpoint_path(run_dir / 'checkpoints', step)}: training diverged ({error}); this checkpoint holds "
                    "the last good step, lower optim.lr or check the data"
                ) from None
            scaler.step(optimizer)
            if discriminator_optimizer is not None and stage == "adapt":
                scaler.step(discriminator_optimizer)
            scaler.update()
            scheduler.step()
            if stage == "adapt":
                method.update_teacher()
                # Whatever bn_mode, the teacher's buffers come from this rank's batches (its own
                # forward, or the student's buffers, which DDP only syncs at the next forward).
                average_buffers(method.teacher, context)
            step += 1
            progress.update(1)

            if step % int(config.run.log_every) == 0 or step == total_steps:
                logs = mean_across_ranks(logs, context)
                logs["lr"] = optimizer.param_groups[0]["lr"]
                logs["stage"] = stage
                log.log(step, logs)
                progress.set_postfix(loss=f"{logs['loss']:.5f}", stage=stage)
            if (
                int(config.run.eval_every)
                and step % int(config.run.eval_every) == 0
                and step < total_steps
                and context.is_main
            ):
                target_eval = eval_sets.get("target")
                if target_eval is not None:
                    quick = evaluate(
                        method.evaluation_model(), target_eval, keypoint_set, float(config.data.sigma), device=device
                    )
                    log.log(
                        step,
                        {"pck": quick["pck"], **{f"pck_{g}": v for g, v in quick["groups"].items()}},
                        prefix="eval_target",
                    )
                    method.set_train_mode()
            if _stop_requested(stop, context):
                save(step)
                progress.close()
                raise TrainingInterrupted(
                    f"stopped by signal {stop.received} at step {step}; checkpoint saved, continue with --resume auto"
                )
            if step % int(config.run.checkpoint_every) == 0 and step < total_steps:
                save(step)
    progress.close()
    if not adapting and cache_file is not None:
        _finish_pretraining(save, cache_file, step, context)
    elapsed = time.time() - started

    # -- final numbers: the teacher (or the student when there is none) --------------------------
    save(step, run_dir / "checkpoints" / "final.pt")
    results = {
        "method": str(config.method),
        "preset": config.preset,
        "task": config.task,
        "steps": step,
        "train_seconds": round(elapsed, 1),
    }
    if context.is_main:
        model = method.evaluation_model()
        for name, dataset in eval_sets.items():
            results[name] = evaluate(model, dataset, keypoint_set, float(config.data.sigma), device=device)
            log.log(
                step,
                {"pck": results[name]["pck"], **{f"pck_{g}": v for g, v in results[name]["groups"].items()}},
                prefix=f"eval_{name}",
            )
        if log.writer is not None:
            from posealign.engine.visualize import log_prediction_images

            if "target" in eval_sets:
                log_prediction_images(log.writer, model, eval_sets["target"], keypoint_set, step, device)
        # The paper's table layout for this keypoint set: one row per evaluated split.
        columns = [*keypoint_set.groups, "All"]
        results["table"] = {
            "columns": columns,
            "rows": {
                name: [results[name]["groups"].get(c) if c != "All" else results[name]["pck"] for c in columns]
                for name in eval_sets
            },
        }
        write_json_atomic(run_dir / "results.json", results)
    log.close()
    barrier(context)
    return results


def _stop_requested(stop: _StopSignal, context: DistributedContext) -> bool:
    """A signal on any rank stops every rank at the same step (so they save one checkpoint together)."""
    stopping = any_rank(stop.received is not None, context)
    if stopping and stop.received is None:
        stop.received = signal.SIGTERM
    return stopping


def _finish_pretraining(save, cache_file: Path | None, step: int, context: DistributedContext) -> None:
    """End of stage 1: keep it in the shared cache so other presets start from it."""
    if cache_file is not None and not cache_file.is_file():
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        save(step, cache_file)


def _gather_rng_states(context: DistributedContext) -> list[dict]:
    """Every rank's RNG state, so a resumed multi-process run continues each rank's stream."""
    state = rng_state()
    if not context.enabled:
        return [state]
    states: list[dict] = [None] * context.world_size  # type: ignore[list-item]
    torch.distributed.all_gather_object(states, state)
    return states


def _check_same_keypoints(state: dict, keypoint_set, path: Path) -> None:
    saved = state.get("keypoint_set", {}).get("names")
    if saved is not None and list(saved) != list(keypoint_set.names):
        raise UserError(
            f"{path}: checkpoint is for keypoint set {state['keypoint_set']['name']!r} ({len(saved)} keypoints), this run uses {keypoint_set.name!r}; use a matching checkpoint"
        )


def _plain(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module

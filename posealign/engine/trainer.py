"""The training loop, top to bottom: build, maybe resume, stage 1, stage 2, evaluate, write results.

Stage 1 ("pretrain", ``train.pretrain_steps``) trains the student on the labeled domain; stage 2
("adapt", ``train.adapt_steps``) runs the mean teacher with the enabled alignment levels. A
matching stage 1 found in ``run.pretrain_cache`` is reused instead of being trained again
(:mod:`posealign.engine.stage1_cache`); SIGTERM/SIGINT save and stop (:mod:`posealign.engine.interrupts`).
A checkpoint is written every ``run.checkpoint_every`` steps, at the end of each stage, on a stop
signal, and, holding the last good state, when a loss turns non-finite or a batch cannot be read.
The main process holds the run folder's lock (:class:`~posealign.engine.run_directory.RunLock`).
"""

from __future__ import annotations

import functools
import shutil
import time
from contextlib import ExitStack, nullcontext, suppress
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from posealign.alignment.pose_prior import fit_pose_prior
from posealign.config_checks import describe_inactive, inactive_changes
from posealign.data.batch import Batch
from posealign.engine.checkpoint import checkpoint_path, latest_checkpoint
from posealign.engine.data import RunData, adapts, build_run_data, collate, to_batch
from posealign.engine.device_settings import build_adam, use_channels_last
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
from posealign.engine.initial_model import load_initial_model
from posealign.engine.interrupts import StopSignal, TrainingInterrupted
from posealign.engine.run_directory import MetricsLog, RunLock, check_run_directory, prepare_run_directory
from posealign.engine.stage1_cache import keep_stage1, reuse_stage1, stage1_cache_file
from posealign.engine.training_state import TrainingState
from posealign.errors import DatasetFormatError, UserError
from posealign.files import atomic_write_json
from posealign.metrics.domain_gap import domain_gap
from posealign.multilevel_alignment import MultiLevelAlignment, NonFiniteLossError, to_floats


def train(config: DictConfig, resume: str | None = None) -> dict:
    """Train a run as configured and return its results (also written to ``RUN/results.json``).

    resume: None (fresh run), ``"auto"`` (latest checkpoint of the run directory, fresh if none) or
    a checkpoint path. Raises :class:`TrainingInterrupted` after saving when SIGTERM/SIGINT arrives.
    A run folder this call created is removed again when the training fails before a step was
    trained (an error in the data found then must not block the corrected command); once a step is
    trained the folder stays, with its log and checkpoints, whatever happens (an error raised then
    carries ``trained_steps``).
    """
    context = setup_distributed(config.run.device)
    run_dir = Path(config.run.out)
    existed = run_dir.exists()
    try:
        with RunLock(run_dir) if context.is_main else nullcontext(), ExitStack() as cleanup:
            return _train(config, resume, context, cleanup)
    except TrainingInterrupted:
        raise
    except BaseException as error:
        if context.is_main and not existed and run_dir.is_dir() and not _trained_anything(error, run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        cleanup_distributed(context)


def _trained_anything(error: BaseException, run_dir: Path) -> bool:
    checkpoints = run_dir / "checkpoints"
    return getattr(error, "trained_steps", 0) > 0 or (checkpoints.is_dir() and any(checkpoints.iterdir()))


def _train(config: DictConfig, resume: str | None, context: DistributedContext, cleanup: ExitStack) -> dict:
    torch.manual_seed(int(config.run.seed) + context.rank)
    run_dir = Path(config.run.out)
    if context.is_main:
        check_run_directory(config, resume is not None)  # fail fast, before loading any data
    data = build_run_data(config, context)
    cleanup.callback(data.close)  # the loader workers end with the training, however it ends
    # Written only now: a run stopped by bad data leaves no config.yaml that the corrected run would clash with.
    if context.is_main:
        prepare_run_directory(config, resume is not None)
    barrier(context)
    log = MetricsLog(run_dir, bool(config.run.tensorboard), enabled=context.is_main)

    training = build_training(config, data, context)
    if config.train.get("init"):
        started_from = load_initial_model(training.method, str(config.train.init), data.keypoint_set)
        _say(context, started_from)
        log.note(started_from)
    # Stage 1 draws the same random numbers whatever networks this preset built (daml's
    # discriminator initialisation would shift them), so stage 1 trained here equals a cached one.
    torch.manual_seed(int(config.run.seed) + context.rank)
    step = maybe_resume(training, resume, log)
    cache_file = stage1_cache_file(config, context.world_size)
    step = maybe_reuse_stage1(training, cache_file, step)
    log.note(_announce(config, context))
    inactive = inactive_changes(config)
    if inactive:  # a task's settings for every preset, say: not wrong, but not used here
        log.note(describe_inactive(inactive))

    pretrain_steps, total_steps = _schedule(config)
    training.method.set_train_mode(adapting=adapts(config) and step >= pretrain_steps)
    started = time.time()
    with StopSignal() as stop, _progress_bar(config, context, step) as progress:
        step = run_steps(training, "pretrain", step, pretrain_steps, data, log, progress, stop)
        if adapts(config):
            if step == pretrain_steps:  # stage 2 begins here (not when resuming inside it)
                fit_source_pose_prior(training)
                keep_stage1(training, cache_file, step)
                start_adaptation(training, data, log, step)
            progress.set_postfix(stage="adapt")
            step = run_steps(training, "adapt", step, total_steps, data, log, progress, stop)
    if not adapts(config):
        fit_source_pose_prior(training)
        keep_stage1(training, cache_file, step)
    elapsed = time.time() - started

    training.save(step, run_dir / "checkpoints" / "final.pt")
    results = {
        "method": str(config.method),
        "preset": config.preset,
        "task": config.task,
        "steps": step,
        "train_seconds": round(elapsed, 1),
    }
    if training.method.needs_temperature_calibration:
        results["pose_temperature"] = training.method.pose_temperature
    if context.is_main:
        results.update(evaluate_final(training, data, log, step))
        log.note(f"finished: {step} steps in {elapsed:.0f} s; target PCK {results.get('target', {}).get('pck')}")
        atomic_write_json(run_dir / "results.json", results)
    log.close()
    barrier(context)
    return results


def build_training(config: DictConfig, data: RunData, context: DistributedContext) -> TrainingState:
    """The networks on the device (wrapped for DDP and torch.compile as configured), their
    optimisers, the LR schedule and the gradient scaler."""
    device = context.device
    method = MultiLevelAlignment(
        config, data.keypoint_set.num_keypoints, on_any_rank=functools.partial(any_rank, context=context)
    ).to(device)
    if use_channels_last(config, device):
        method.to(memory_format=torch.channels_last)
    if context.enabled and config.run.sync_batchnorm:
        method.student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method.student)
    optimizer = build_adam(method.student.parameters(), float(config.optim.lr), device)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, list(config.optim.milestones), float(config.optim.gamma)
    )
    discriminator_optimizer = None
    if method.discriminator is not None:
        discriminator_optimizer = build_adam(method.discriminator.parameters(), float(config.align.feature.lr), device)
    scaler = torch.amp.GradScaler(device.type, enabled=config.run.amp == "fp16")
    if context.enabled:
        ids = [device.index] if device.type == "cuda" else None
        method.student = DistributedDataParallel(method.student, device_ids=ids)
        if method.discriminator is not None:
            method.discriminator = DistributedDataParallel(method.discriminator, device_ids=ids)
    if config.run.compile:
        method.student = torch.compile(method.student, backend=str(config.run.compile_backend))
    return TrainingState(
        config=config,
        context=context,
        method=method,
        optimizer=optimizer,
        discriminator_optimizer=discriminator_optimizer,
        scheduler=scheduler,
        scaler=scaler,
        labeled_stream=data.labeled,
        target_stream=data.target,
        keypoint_set=data.keypoint_set,
    )


def maybe_resume(training: TrainingState, resume: str | None, log: MetricsLog) -> int:
    """The step to start from: 0 for a fresh run, else that of the checkpoint ``resume`` names
    (``"auto"``: the run's latest, 0 when there is none). Metrics logged after it are dropped."""
    if resume is None:
        return 0
    path = latest_checkpoint(training.checkpoint_dir) if resume == "auto" else Path(resume)
    if path is None:
        return 0
    step, saved_world_size = training.restore(path)
    log.truncate_after(step)
    message = f"resumed from {path} at step {step}"
    if saved_world_size != training.context.world_size:
        message += (
            f" (written by {saved_world_size} rank(s), continued on {training.context.world_size}: networks,"
            " optimisers and schedule continue exactly; data order and random streams do not)"
        )
    _say(training.context, message)
    log.note(message)
    return step


def maybe_reuse_stage1(training: TrainingState, cache_file: Path | None, step: int) -> int:
    """A fresh run whose stage 1 is in the cache starts at stage 2; otherwise ``step`` is unchanged."""
    pretrain_steps, _ = _schedule(training.config)
    if cache_file is None or step != 0 or pretrain_steps == 0 or not cache_file.is_file():
        return step
    refused = reuse_stage1(training, cache_file)
    if refused:
        _say(training.context, refused)
        return step
    _say(training.context, f"reusing stage 1 from {cache_file}")
    return pretrain_steps


def fit_source_pose_prior(training: TrainingState) -> None:
    """End of stage 1 on source labels: fit the source pose prior from them (labels only, no image
    read), so that this run's checkpoints carry it to a source-free stage 2 (``train.init``)."""
    method = training.method
    if training.config.train.supervised_on != "source" or method.source_pose_prior is not None:
        return
    records = training.labeled_stream.dataset.dataset.records
    keypoints = torch.stack([torch.from_numpy(record.keypoints) for record in records])
    visible = torch.stack([torch.from_numpy(record.visible) for record in records])
    method.source_pose_prior = fit_pose_prior(keypoints, visible)


def start_adaptation(training: TrainingState, data: RunData, log: MetricsLog, step: int) -> None:
    """The teacher starts as the pretrained student; a calibrated pose temperature is set and noted;
    the student's lr restarts at ``optim.adapt_lr`` when one is set."""
    method = training.method
    adapt_lr = _optim_number(training.config, "adapt_lr")
    if adapt_lr is not None:
        # After the stage-1 cache was written, so runs that differ only here share their stage 1. The
        # schedule is chainable: milestones still to come multiply this lr by gamma.
        for group in training.optimizer.param_groups:
            group["lr"] = adapt_lr
        log.note(f"stage 2 starts at lr {adapt_lr:.3g} (optim.adapt_lr)")
    calibration_images = None
    method.set_train_mode(adapting=True)
    # The first images of the labeled (source) split, un-augmented: deterministic, no RNG drawn. A
    # source-free run calibrates on target images instead: the pretrained network's maps, no label read.
    calibration_stream = data.labeled if data.labeled is not None else data.target
    if method.needs_temperature_calibration:
        dataset = calibration_stream.dataset
        count = min(len(dataset), _CALIBRATION_IMAGES)
        items = collate([dataset[i] for i in range(count)])
        device = training.context.device
        calibration_images = to_batch(items, device, use_channels_last(training.config, device)).images
    method.start_adaptation(calibration_images)
    if calibration_images is not None:
        domain = "source" if data.labeled is not None else "target"
        log.note(
            f"pose level: temperature {method.pose_temperature:.4g} calibrated on {len(calibration_images)} "
            f"{domain} images"
        )


# Source images the pose temperature is calibrated on: enough maps (x keypoints x 2 axes) for a stable mean.
_CALIBRATION_IMAGES = 64


def run_steps(
    training: TrainingState,
    stage: str,
    step: int,
    end: int,
    data: RunData,
    log: MetricsLog,
    progress: tqdm,
    stop: StopSignal,
) -> int:
    """Steps of ``stage`` until ``end``, each followed by its log line, a quick evaluation, the stop
    check and a checkpoint when due and at the stage's end. Returns the step reached.

    An error raised here gets ``trained_steps``, the step reached: a folder with trained steps is
    kept whatever went wrong (see :func:`train`).
    """
    config, context = training.config, training.context
    _, total_steps = _schedule(config)
    try:
        while step < end:
            logs = train_one_step(training, stage, step)
            step += 1
            progress.update(1)
            if _logged_step(config, step, total_steps):
                logs = mean_across_ranks(to_floats(logs), context)
                logs["lr"] = training.optimizer.param_groups[0]["lr"]
                logs["stage"] = stage
                log.log(step, logs)
                progress.set_postfix(loss=f"{logs['loss']:.5f}", stage=stage)
            eval_every = int(config.run.eval_every)
            if eval_every and step % eval_every == 0 and step < total_steps and context.is_main:
                _quick_evaluation(training, data, log, step)
            if stop.requested(context):
                training.save(step)
                raise TrainingInterrupted(
                    f"stopped by signal {stop.received} at step {step}; checkpoint saved, continue with --resume auto",
                    signum=stop.received,
                )
            # The last stage's end is checkpoints/final.pt, written next.
            if step < total_steps and (step % int(config.run.checkpoint_every) == 0 or step == end):
                training.save(step)
    except BaseException as error:
        with suppress(AttributeError):  # an exception type without attributes of its own
            error.trained_steps = step
        raise
    return step


def train_one_step(training: TrainingState, stage: str, step: int) -> dict[str, torch.Tensor]:
    """One optimisation step: a labeled (and a target) batch, the method's losses and backward, the
    optimisers and the LR schedule, then the teacher's EMA in stage 2. Returns the scalars to log (tensors).

    A non-finite loss saves this step's checkpoint (still the last good state) and stops the run; so
    does a batch that cannot be read (an image that does not decode, a record that fails its checks).
    """
    positions = _stream_positions(training)
    try:
        labeled, target = next_batches(training)
    except (DatasetFormatError, UserError) as error:
        raise _saved_after_data_error(training, error, step, positions) from None
    return optimization_step(training, stage, step, labeled, target)


def _stream_positions(training: TrainingState) -> list[dict | None]:
    streams = (training.labeled_stream, training.target_stream)
    return [stream.state_dict() if stream is not None else None for stream in streams]


def _saved_after_data_error(
    training: TrainingState, error: Exception, step: int, positions: list[dict | None]
) -> Exception:
    """``error`` (which names the file) with where the last good state is and how to go on. The
    streams go back to where this step began, so the checkpoint holds the state after ``step`` steps.
    Under several ranks only the failing one is here: it cannot save alone and names the last checkpoint."""
    if step == 0:
        return error  # nothing trained, nothing to save
    for stream, position in zip((training.labeled_stream, training.target_stream), positions, strict=True):
        if stream is not None:
            stream.load_state_dict(position)
    path = checkpoint_path(training.checkpoint_dir, step)
    if not training.context.enabled and not path.is_file():
        training.save(step)
    where = f"the last good state (step {step}) is saved in {path}" if path.is_file() else "the last checkpoint stays"
    return type(error)(f"{error}; {where}: after fixing or removing that file, continue with --resume auto")


def next_batches(training: TrainingState) -> tuple[Batch | None, Batch | None]:
    """The step's labeled batch (None in a source-free run) and target batch (None when the run reads
    no target images), on the device."""
    device = training.context.device
    channels_last = use_channels_last(training.config, device)
    stream = training.labeled_stream
    labeled = to_batch(next(stream), device, channels_last) if stream is not None else None
    target = to_batch(next(training.target_stream), device, channels_last) if training.target_stream else None
    return labeled, target


def optimization_step(
    training: TrainingState, stage: str, step: int, labeled: Batch, target: Batch | None
) -> dict[str, torch.Tensor]:
    """:func:`train_one_step` on batches already on the device (benchmarks/end_to_end.py times it alone)."""
    config, context, method = training.config, training.context, training.method
    pretrain_steps, total_steps = _schedule(config)
    training.optimizer.zero_grad(set_to_none=True)
    if training.discriminator_optimizer is not None:
        training.discriminator_optimizer.zero_grad(set_to_none=True)
    # A diverging forward overwrites BatchNorm statistics before its loss is checked.
    buffers_before = [b.detach().clone() for b in method.buffers()]
    try:
        logs = method.forward_backward(
            labeled,
            target,
            stage,
            progress=max(step - pretrain_steps, 0) / max(total_steps - pretrain_steps, 1),
            step=step,
            scaler=training.scaler,
            autocast=_autocast(config, context.device),
            # The gradient-norm diagnostics need extra backward passes through a retained graph, which
            # neither DDP (its reducer expects one backward) nor a compiled student (donated buffers) allows.
            diagnose=_logged_step(config, step + 1, total_steps) and not context.enabled and not config.run.compile,
        )
    except NonFiniteLossError as error:
        # Parameters and optimiser states are still those of the last good step; the buffers are put back.
        torch._foreach_copy_(list(method.buffers()), buffers_before)
        training.save(step)
        raise UserError(
            f"{checkpoint_path(training.checkpoint_dir, step)}: training diverged ({error}); this checkpoint holds "
            "the last good step, lower optim.lr or check the data"
        ) from None
    training.scaler.step(training.optimizer)
    if training.discriminator_optimizer is not None and stage == "adapt":
        training.scaler.step(training.discriminator_optimizer)
    training.scaler.update()
    training.scheduler.step()
    if stage == "adapt":
        method.update_teacher()
        # Whatever bn_mode, the teacher's buffers come from this rank's batches (its own
        # forward, or the student's buffers, which DDP only syncs at the next forward).
        average_buffers(method.teacher, context)
    return logs


def _logged_step(config: DictConfig, step: int, total_steps: int) -> bool:
    """Whether the step that ends at ``step`` is logged (and so carries the diagnostics)."""
    return step % int(config.run.log_every) == 0 or step == total_steps


def evaluate_final(training: TrainingState, data: RunData, log: MetricsLog, step: int) -> dict:
    """PCK of the teacher (the student when there is none) on every evaluation split, plus the
    paper's table: one row per split, one column per keypoint group and "All", and, where a source
    and a target split are evaluated, the domain gap of its features
    (:func:`posealign.metrics.domain_gap.domain_gap`). Main rank only."""
    keypoint_set, device = data.keypoint_set, training.context.device
    model = training.method.evaluation_model()
    results = {}
    for name, dataset in data.eval_sets.items():
        results[name] = evaluate(model, dataset, keypoint_set, device=device)
        log.log(step, _pck_record(results[name]), prefix=f"eval_{name}")
    if "source" in data.eval_sets and "target" in data.eval_sets:
        # How far apart the evaluated network keeps the domains (no label read): the feature level's work.
        gap = domain_gap(model, data.eval_sets["source"], data.eval_sets["target"], device=device)
        if gap is not None:
            results["domain_gap"] = gap
            log.log(step, {k: v for k, v in gap.items() if k != "layer"}, prefix="eval_domain_gap")
    if log.writer is not None and "target" in data.eval_sets:
        from posealign.engine.prediction_tiles import log_prediction_images

        log_prediction_images(log.writer, model, data.eval_sets["target"], keypoint_set, step, device)
    columns = [*keypoint_set.groups, "All"]
    results["table"] = {
        "columns": columns,
        "rows": {
            name: [results[name]["groups"].get(c) if c != "All" else results[name]["pck"] for c in columns]
            for name in data.eval_sets
        },
    }
    return results


def _quick_evaluation(training: TrainingState, data: RunData, log: MetricsLog, step: int) -> None:
    """``run.eval_every``: target PCK during training (main rank), then back to train mode."""
    target_eval = data.eval_sets.get("target")
    if target_eval is None:
        return
    method = training.method
    quick = evaluate(method.evaluation_model(), target_eval, data.keypoint_set, device=training.context.device)
    log.log(step, _pck_record(quick), prefix="eval_target")
    method.set_train_mode(adapting=step > int(training.config.train.pretrain_steps))


def _pck_record(result: dict) -> dict:
    return {"pck": result["pck"], **{f"pck_{g}": v for g, v in result["groups"].items()}}


def _announce(config: DictConfig, context: DistributedContext) -> str:
    """The schedule and the effective batch, up front (printed, and returned for the text log)."""
    pretrain_steps, total_steps = _schedule(config)
    batch_size = int(config.train.batch_size)
    message = (
        f"{config.method}: {total_steps} steps ({pretrain_steps} pretrain + {total_steps - pretrain_steps} adapt), "
        f"batch {batch_size} x {context.world_size} rank(s) = {batch_size * context.world_size} per domain, "
        f"lr {config.optim.lr}{_adapt_lr_words(config)}, device {context.device}"
    )
    _say(context, message)
    return message


def _optim_number(config: DictConfig, key: str) -> float | None:
    """A nullable ``optim`` setting (``adapt_lr``) as a number (YAML keeps 1e-4,
    without a dot, as a string), None when unset."""
    value = config.optim.get(key)
    return None if value is None else float(value)


def _adapt_lr_words(config: DictConfig) -> str:
    adapt_lr = _optim_number(config, "adapt_lr")
    return f" (stage 2 from {adapt_lr:g})" if adapt_lr is not None and adapts(config) else ""


def _progress_bar(config: DictConfig, context: DistributedContext, step: int) -> tqdm:
    _, total_steps = _schedule(config)
    return tqdm(
        total=total_steps,
        initial=step,
        disable=not (config.run.progress and context.is_main),
        dynamic_ncols=True,
        desc=str(config.method),
    )


def _schedule(config: DictConfig) -> tuple[int, int]:
    """(steps of stage 1, steps of both stages); stage 2 counts only when the run adapts."""
    pretrain_steps = int(config.train.pretrain_steps)
    return pretrain_steps, pretrain_steps + (int(config.train.adapt_steps) if adapts(config) else 0)


def _autocast(config: DictConfig, device: torch.device):
    if config.run.amp == "off":
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.run.amp)
    if dtype is None:
        raise UserError(f"run.amp must be off, bf16 or fp16, not {config.run.amp!r}")
    return torch.autocast(device_type=device.type, dtype=dtype)


def _say(context: DistributedContext, message: str) -> None:
    if context.is_main:
        print(message)

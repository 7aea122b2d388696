"""Datasets of a run and the endless, resumable, per-rank batch streams that feed training."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from posealign.config_checks import KEYPOINT_SET_FROM_FILE
from posealign.data.batch import Batch
from posealign.data.pose_dataset import CroppedPoseDataset, check_keypoint_count
from posealign.data.registry import load_dataset
from posealign.engine.distributed import DistributedContext
from posealign.errors import DatasetFormatError, UserError
from posealign.keypoints import KeypointSet, get_keypoint_set


@dataclass
class RunData:
    """The datasets of a run: the labeled stream (source, or target for the oracle), the unlabeled
    target stream when a step needs target images (None otherwise), the splits evaluated at the end
    and the keypoint set they share."""

    labeled: BatchStream | None
    target: BatchStream | None
    eval_sets: dict[str, CroppedPoseDataset]
    keypoint_set: KeypointSet

    def close(self) -> None:
        """Stop the streams' loader workers (however the training ends: see ``BatchStream.close``)."""
        for stream in (self.labeled, self.target):
            if stream is not None:
                stream.close()


def build_run_data(config: DictConfig, context: DistributedContext) -> RunData:
    """Every dataset the config names, checked against one keypoint set, with this rank's streams."""
    labeled_role = {"target": "target", "source": "source"}.get(config.train.supervised_on)
    # A source-free run (supervised_on: none) opens no labeled training split: no source file is read.
    labeled_set = build_dataset(config.data[labeled_role], config, labeled_role) if labeled_role else None
    target_set = build_dataset(config.data.target, config, "target") if needs_target_images(config) else None
    eval_sets = {name: build_dataset(spec, config, f"eval.{name}") for name, spec in evaluated_splits(config).items()}
    training_sets = [dataset for dataset in (labeled_set, target_set) if dataset is not None]
    keypoint_set = run_keypoint_set(config, [*training_sets, *eval_sets.values()])

    def stream(dataset: CroppedPoseDataset, seed: int) -> BatchStream:
        return BatchStream(
            dataset,
            int(config.train.batch_size),
            seed,
            context.rank,
            context.world_size,
            int(config.run.num_workers),
            pin_memory=context.device.type == "cuda",
        )

    seed = int(config.run.seed)
    return RunData(
        labeled=stream(labeled_set, seed) if labeled_set else None,
        target=stream(target_set, seed + 1) if target_set else None,
        eval_sets=eval_sets,
        keypoint_set=keypoint_set,
    )


def evaluated_splits(config: DictConfig) -> dict[str, DictConfig]:
    """``data.eval``'s splits this run evaluates: all, but in a source-free run not ``source``
    (the run has no source images)."""
    splits = dict((config.data.get("eval") or {}).items())
    if config.train.supervised_on == "none":
        splits.pop("source", None)
    return splits


def adapts(config: DictConfig) -> bool:
    """Whether the run has a stage 2 (the mean teacher and its alignment levels)."""
    return bool(config.mean_teacher.enabled) and int(config.train.adapt_steps) > 0


def needs_target_images(config: DictConfig) -> bool:
    """Stage 2 reads target images, and so does a stage 1 that stylizes source images as targets.

    A run that reads them draws a target batch at every step of both stages.
    """
    return adapts(config) or bool(config.align.image.enabled and config.train.pretrain_image_level)


def build_dataset(spec: DictConfig, config: DictConfig, role: str) -> CroppedPoseDataset:
    """A dataset entry of the config ({dataset, root, split, options}) as a cropped torch dataset."""
    if spec.root is None:
        raise UserError(f"data.{role}.root is not set; pass data.{role}.root=/path/to/dataset")
    options = spec.get("options")  # an empty DictConfig is falsy: test for None, not truth
    options = OmegaConf.to_container(options, resolve=True) if options is not None else {}
    dataset = load_dataset(spec.dataset, str(spec.root), split=spec.split, **options)
    if len(dataset) == 0:
        raise UserError(
            f"{spec.root}: split {spec.split!r} of {spec.dataset} has no annotated objects; check data.{role}.split"
        )
    return CroppedPoseDataset(dataset, int(config.data.image_size), preload=bool(config.data.preload))


def run_keypoint_set(config: DictConfig, datasets: list[CroppedPoseDataset]) -> KeypointSet:
    """The keypoint set named by the config, or with ``from_file`` the first dataset's (a COCO
    category defines its own)."""
    if config.data.keypoint_set == KEYPOINT_SET_FROM_FILE:
        keypoint_set = datasets[0].dataset.keypoint_set
    else:
        try:
            keypoint_set = get_keypoint_set(config.data.keypoint_set)
        except KeyError:
            raise UserError(f"data.keypoint_set={config.data.keypoint_set}: unknown keypoint set") from None
    for dataset in datasets:
        check_keypoint_count(dataset.dataset, keypoint_set.num_keypoints, dataset.dataset.name)
    return keypoint_set


def collate(items: list[dict]) -> dict:
    return {
        "image": torch.stack([i["image"] for i in items]),
        "keypoints": torch.stack([i["keypoints"] for i in items]),
        "visible": torch.stack([i["visible"] for i in items]),
        "crop_box": torch.stack([i["crop_box"] for i in items]),
        "index": torch.tensor([i["index"] for i in items]),
    }


def to_batch(items: dict, device: torch.device, channels_last: bool = False) -> Batch:
    images = items["image"].to(device, non_blocking=True).float().div_(255.0)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return Batch(
        images=images,
        keypoints=items["keypoints"].to(device, non_blocking=True),
        visible=items["visible"].to(device, non_blocking=True),
        indices=items["index"],
    )


class BatchStream:
    """Endless batches over a dataset: a fresh permutation per epoch (seeded by seed and epoch, the
    same on every rank), each rank taking its own share. ``position`` (epoch, batches consumed) goes
    into checkpoints, so a resumed run sees exactly the batches the uninterrupted one would.

    With workers, one DataLoader serves every epoch from an endless batch sampler: its workers
    start once, not at each epoch, and their prefetching runs on across epoch boundaries.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        if len(dataset) < batch_size * world_size:
            raise UserError(
                f"{dataset.dataset.root}: {len(dataset)} samples, fewer than one batch ({batch_size} x {world_size} ranks); lower train.batch_size"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.batches_per_epoch = len(dataset) // world_size // batch_size
        self.epoch = 0
        self.consumed = 0
        self._iterator = None

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.dataset), generator=generator)
        per_rank = len(order) // self.world_size
        mine = order[self.rank * per_rank : (self.rank + 1) * per_rank].tolist()
        return [mine[i * self.batch_size : (i + 1) * self.batch_size] for i in range(self.batches_per_epoch)]

    def _batches_from(self, epoch: int, consumed: int) -> Iterator[list[int]]:
        """Every batch from ``consumed`` batches into ``epoch`` on, epoch after epoch."""
        while True:
            yield from self._epoch_batches(epoch)[consumed:]
            epoch, consumed = epoch + 1, 0

    def _start(self) -> None:
        if self.consumed >= self.batches_per_epoch:  # saved right after an epoch's last batch
            self.epoch, self.consumed = self.epoch + 1, 0
        batches = _EndlessBatches(self._batches_from(self.epoch, self.consumed))
        if self.num_workers > 0:
            loader = DataLoader(
                self.dataset,
                batch_sampler=batches,
                num_workers=self.num_workers,
                collate_fn=collate,
                pin_memory=self.pin_memory,
                # Its own generator: a loader draws its workers' base seed when iterated, and drawing
                # it from the global RNG would shift the augmentation stream of a resumed run.
                generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch),
                worker_init_fn=leave_stop_signals_to_the_main_process,
            )
            self._iterator = iter(loader)
        else:
            self._iterator = (collate([self.dataset[i] for i in batch]) for batch in batches)

    def __next__(self) -> dict:
        if self._iterator is None:
            self._start()
        try:
            items = next(self._iterator)
        except (DatasetFormatError, UserError) as error:
            raise type(error)(_one_line(error)) from None
        if self.consumed >= self.batches_per_epoch:
            self.epoch, self.consumed = self.epoch + 1, 0
        self.consumed += 1
        return items

    def close(self) -> None:
        """Stop the loader's workers now, through their queues, rather than whenever the garbage
        collector finds the loader."""
        shutdown = getattr(self._iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._iterator = None

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed, "world_size": self.world_size}

    def skip_to(self, batches: int) -> None:
        """The position after ``batches`` batches drawn from the start, where ``batches`` calls of
        ``next`` would leave it (without reading the data)."""
        if batches <= 0:
            self.epoch, self.consumed = 0, 0
        else:
            self.epoch, self.consumed = (
                (batches - 1) // self.batches_per_epoch,
                (batches - 1) % self.batches_per_epoch + 1,
            )
        self._iterator = None

    def load_state_dict(self, state: dict) -> None:
        """Continue where ``state`` stopped. Saved with another number of ranks, the shares of the
        permutation differ: the same epoch continues at the same fraction of it (the batches are not
        those the saved run would have drawn)."""
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        saved_world_size = int(state.get("world_size", self.world_size))
        if saved_world_size != self.world_size:
            self.consumed = self.consumed * saved_world_size // self.world_size
        self.close()


def leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """A loader worker ignores SIGINT, and SIGTERM unless its main process sends it. SLURM,
    ``timeout`` and Ctrl-C signal every process of the job: a worker killed by one would fail the
    main process's next batch before it saved. The main process saves and stops
    (:mod:`posealign.engine.interrupts`); its loader ends the workers through their queues, or with
    SIGTERM (which, from it, still ends them at once)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):  # no sender to tell apart (macOS): the queues end them
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started later inherit it
    threading.Thread(target=_exit_on_sigterm_from_the_main_process, args=(os.getppid(),), daemon=True).start()


def _exit_on_sigterm_from_the_main_process(main_pid: int) -> None:
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == main_pid:
            os._exit(0)


class _EndlessBatches:
    """A DataLoader ``batch_sampler`` over an endless iterator of batches (it has no length)."""

    def __init__(self, batches: Iterator[list[int]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return self.batches


def _one_line(error: Exception) -> str:
    """The dataset's own one-line message of an error a DataLoader worker re-raised with its traceback."""
    text = str(error).rstrip()
    if "Original Traceback" not in text:
        return text
    return text.splitlines()[-1].removeprefix(f"{type(error).__module__}.{type(error).__qualname__}: ")

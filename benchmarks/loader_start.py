"""Where the seconds before a run's first batches go: the data loader's worker start, timed apart.

    python benchmarks/loader_start.py                 # 8 workers, a 256 px batch of 32
    python benchmarks/loader_start.py --workers 2 --size 64

On an H200 (gVisor), ``python benchmarks/end_to_end.py --task benchmark_paper_scale --amp bf16
--preset daml`` measured 82 s in the trainer before its first step, where the same model built and
ran 46 steps on fixed batches in 8.7 s.
The two streams of ``run.num_workers`` forked workers, with pinned memory on CUDA, are what is left.
This times each suspect alone, on batches the size of a training step's, with a dataset that does
no work (so decoding is not in it):

- the first batch of a DataLoader whose workers fork from a process without CUDA, then the same
  after CUDA is initialised and a ResNet-101 sits on the GPU (a bigger address space to fork);
- the same with pinned memory (``pin_memory=True``, as the trainer uses on CUDA);
- one pinned host allocation of a batch's size, the first and a second time.

Each figure is wall-clock seconds, printed with the machine.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch.utils.data import DataLoader, Dataset


class Blank(Dataset):
    """Images of one size whose reading costs nothing: what remains is the loader itself."""

    def __init__(self, size: int, length: int = 4096) -> None:
        self.size, self.length = size, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.full((3, self.size, self.size), float(index % 7))


def first_batches(workers: int, batch: int, size: int, pin: bool, batches: int = 2) -> float:
    """Seconds from building the loader to its first ``batches`` batches."""
    started = time.perf_counter()
    loader = DataLoader(Blank(size), batch_size=batch, num_workers=workers, pin_memory=pin)
    iterator = iter(loader)
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - started
    del iterator  # the workers stop
    return seconds


def pinned_allocation(batch: int, size: int) -> float:
    started = time.perf_counter()
    torch.empty(batch, 3, size, size).pin_memory()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    shape = (args.workers, args.batch_size, args.size)

    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name() if cuda else "no GPU"
    print(f"machine: {platform.processor() or platform.machine()}, {gpu}; torch {torch.__version__}")
    rows = [("workers fork, no CUDA in the process", first_batches(*shape, pin=False))]
    if cuda:
        import torchvision

        model = torchvision.models.resnet101().cuda()  # a CUDA context and a model, as in training
        torch.cuda.synchronize()
        rows.append(("workers fork after CUDA and a ResNet-101", first_batches(*shape, pin=False)))
        rows.append(("the same, pinned memory", first_batches(*shape, pin=True)))
        rows.append(("one pinned batch, first allocation", pinned_allocation(args.batch_size, args.size)))
        rows.append(("one pinned batch, again", pinned_allocation(args.batch_size, args.size)))
        del model
    print(f"\n{args.workers} workers, batch {args.batch_size} of {args.size} px, 2 batches each:")
    for name, seconds in rows:
        print(f"  {name:<44} {seconds:8.2f} s")


if __name__ == "__main__":
    main()

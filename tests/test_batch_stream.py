"""BatchStream serves every epoch from one loader and still draws exactly the per-epoch
permutations it always drew, resumed positions included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from posealign.engine.data import BatchStream


class Numbered(torch.utils.data.Dataset):
    """Samples that carry their own index, so a batch shows which samples it holds."""

    def __len__(self) -> int:
        return 23

    def __getitem__(self, index: int) -> dict:
        return {
            "image": torch.full((3, 2, 2), index, dtype=torch.uint8),
            "keypoints": torch.zeros(1, 2),
            "visible": torch.ones(1, dtype=torch.bool),
            "crop_box": torch.zeros(4),
            "index": index,
        }


def expected_batches(epochs: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """The permutation of each epoch, cut into this rank's full batches (the stream's contract)."""
    batches = []
    for epoch in range(epochs):
        order = torch.randperm(23, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        per_rank = 23 // world_size
        mine = order[rank * per_rank : (rank + 1) * per_rank].tolist()
        batches += [mine[i * batch_size : (i + 1) * batch_size] for i in range(len(mine) // batch_size)]
    return batches


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_across_epochs_and_after_a_resume(workers):
    expected = expected_batches(3, 5, seed=7)  # 4 batches an epoch, 3 samples dropped each
    stream = BatchStream(Numbered(), 5, seed=7, num_workers=workers)
    drawn = [next(stream)["index"].tolist() for _ in range(12)]
    assert drawn == expected
    assert stream.state_dict() == {"epoch": 2, "consumed": 4, "world_size": 1}

    for stopped_at in (4, 6):  # after an epoch's last batch, and inside an epoch
        resumed = BatchStream(Numbered(), 5, seed=7, num_workers=workers)
        resumed.load_state_dict({"epoch": stopped_at // 4 - (stopped_at % 4 == 0), "consumed": stopped_at % 4 or 4})
        assert [next(resumed)["index"].tolist() for _ in range(12 - stopped_at)] == expected[stopped_at:]


def test_each_rank_takes_its_share():
    for rank in (0, 1):
        stream = BatchStream(Numbered(), 3, seed=2, rank=rank, world_size=2)
        assert [next(stream)["index"].tolist() for _ in range(6)] == expected_batches(2, 3, 2, rank, 2)


def test_skip_to_stands_where_drawing_that_many_batches_does():
    expected = expected_batches(4, 5, seed=3)  # 4 batches an epoch
    for drawn in range(10):
        stream = BatchStream(Numbered(), 5, seed=3)
        for _ in range(drawn):
            next(stream)
        skipped = BatchStream(Numbered(), 5, seed=3)
        skipped.skip_to(drawn)
        assert skipped.state_dict() == stream.state_dict(), drawn
        assert [next(skipped)["index"].tolist() for _ in range(3)] == expected[drawn : drawn + 3]


def test_workers_leave_stop_signals_to_the_main_process_and_end_with_it(tmp_path):
    # A stop signal sent to the whole process group leaves the workers serving batches; the SIGTERM
    # with which the main process's exit ends them still ends them (or the process would never end).
    script = tmp_path / "draw.py"
    script.write_text(
        "import os, signal, subprocess, sys, time\n"
        f"sys.path[:0] = [{str(Path(__file__).parent)!r}]\n"
        "from test_batch_stream import Numbered\n"
        "from posealign.engine.data import BatchStream\n"
        "stream = BatchStream(Numbered(), 5, seed=7, num_workers=2)\n"
        "next(stream)\n"
        "if len(sys.argv) > 1:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the trainer's StopSignal handles it there\n"
        "    assert os.getpgid(0) == os.getpid()  # its own process group\n"
        "    kill = f'import os, signal; os.killpg({os.getpid()}, signal.SIGTERM)'\n"
        "    subprocess.run([sys.executable, '-c', kill])  # sent by another process (itself in the group), as SLURM's\n"
        "    time.sleep(0.5)\n"
        "    next(stream)  # a killed worker fails this batch\n"
        "print('ok')\n"
    )
    for argv in ([], ["signal"]):
        done = subprocess.run(
            [sys.executable, str(script), *argv], capture_output=True, text=True, timeout=60, start_new_session=True
        )
        assert done.returncode == 0 and done.stdout.strip() == "ok", done

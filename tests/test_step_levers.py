"""The step's speed levers that change no number, bit for bit on the CPU: the three augmented views
(source, weak, strong) warped in one call, the teacher's forward under inference mode, and the EMA
of the BatchNorm buffers as multi-tensor ops. Each is compared with ``torch.equal`` against the
path it replaces (the views augmented one call after another, the teacher under no_grad, the
buffers averaged one by one): the same operations on the same numbers, so not one bit may move.
"""

from __future__ import annotations

import copy

import pytest
import torch

import posealign.multilevel_alignment as multilevel_alignment
from posealign.augmentation import BatchAugmenter, ViewAugmentation, augment_together
from posealign.config import load_config
from posealign.data.batch import Batch
from posealign.mean_teacher import ema_update, make_teacher
from posealign.multilevel_alignment import MultiLevelAlignment
from tests.test_method import TINY  # the step at 32 px, two images a domain

torch.set_num_threads(1)


def test_views_warped_together_are_the_calls_one_after_another():
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(3, 3, 40, 40, generator=generator)
    target = torch.rand(3, 3, 40, 40, generator=generator)
    keypoints = torch.rand(3, 5, 2, generator=generator) * 40
    visible = torch.rand(3, 5, generator=generator) > 0.2
    augment = BatchAugmenter(ViewAugmentation(), 32)
    weak = BatchAugmenter(ViewAugmentation(rotation=30, color_jitter=0.1), 32)
    strong = BatchAugmenter(ViewAugmentation(color_jitter=0.0), 32)  # a view without jitter as well

    torch.manual_seed(1)
    separate = [augment(source, keypoints, visible), weak(target), strong(target)]
    after_separate = torch.get_rng_state()
    torch.manual_seed(1)
    together = augment_together(
        [(augment, source, keypoints, visible), (weak, target, None, None), (strong, target, None, None)]
    )
    assert torch.equal(torch.get_rng_state(), after_separate)
    for mine, theirs in zip(together, separate, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            assert (a is None and b is None) or torch.equal(a, b)


def _reference_path(monkeypatch) -> None:
    """The step as it ran before the levers: each view its own call, the teacher under no_grad."""

    def one_after_another(parts):
        return [augmenter(images, keypoints, visible) for augmenter, images, keypoints, visible in parts]

    monkeypatch.setattr(multilevel_alignment, "augment_together", one_after_another)
    monkeypatch.setattr(torch, "inference_mode", torch.no_grad)


def _batch(seed: int) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return Batch(
        images=torch.rand(2, 3, 32, 32, generator=generator),
        keypoints=torch.rand(2, 16, 2, generator=generator) * 24 + 4,
        visible=torch.ones(2, 16, dtype=torch.bool),
        indices=torch.arange(2) + 10 * seed,
    )


@pytest.mark.parametrize("preset", ["daml", "mean_teacher"])
def test_an_adaptation_step_is_bit_for_bit_the_step_without_the_levers(preset, monkeypatch):
    torch.manual_seed(0)
    built = MultiLevelAlignment(load_config(preset, "benchmark", TINY), 16)
    results = []
    for reference in (False, True):
        if reference:
            _reference_path(monkeypatch)
        method = copy.deepcopy(built)
        method.set_train_mode()
        torch.manual_seed(5)
        logs = method.forward_backward(_batch(1), _batch(2), "adapt", 0.5, step=1)
        results.append((method, logs, torch.get_rng_state()))
    (mine, my_logs, my_rng), (theirs, their_logs, their_rng) = results
    assert torch.equal(my_rng, their_rng)
    assert my_logs.keys() == their_logs.keys()
    for name in my_logs:
        assert torch.equal(my_logs[name], their_logs[name]), name
    for (name, a), b in zip(mine.named_parameters(), theirs.parameters(), strict=True):
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad), name
    for (name, a), b in zip(mine.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # the teacher's BatchNorm statistics from its forward included


@pytest.mark.parametrize("bn_mode", ["copy", "average"])
def test_the_ema_of_the_buffers_is_the_buffer_by_buffer_update(bn_mode):
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4))
    teacher = make_teacher(student)
    student.train()
    for _ in range(3):
        student(torch.randn(2, 3, 6, 6) * 2 + 1)
    expected = copy.deepcopy(teacher)
    with torch.no_grad():
        for t, s in zip(expected.parameters(), student.parameters(), strict=True):
            t.mul_(0.9).add_(s, alpha=0.1)
        for t, s in zip(expected.buffers(), student.buffers(), strict=True):
            if bn_mode == "copy" or not t.is_floating_point():
                t.copy_(s)
            else:
                t.mul_(0.9).add_(s, alpha=0.1)
    ema_update(teacher, student, 0.9, bn_mode)
    for (name, a), b in zip(teacher.state_dict().items(), expected.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert int(teacher[1].num_batches_tracked) == 3  # integers are copied whatever the mode


def test_step_levers_benchmark_times_each_variant_and_gpu_check_reads_it():
    """benchmarks/step_levers.py on a tiny daml (a gpu_check row): one line a variant, the step
    without levers at ratio 1, and gpu_check's table carries each variant's time and ratio."""
    import importlib.util
    import re
    import subprocess
    import sys
    from pathlib import Path

    repository = Path(__file__).resolve().parent.parent
    command = [sys.executable, str(repository / "benchmarks" / "step_levers.py"), "--batch-size", "2"]
    command += ["--rounds", "1", "--warmup", "1", *TINY, "--only", "without batched_views"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=repository, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [re.match(r"^(.+?)\s{2,}([\d.]+)\s+([\d.]+)$", line) for line in done.stdout.splitlines()]
    lines = {row[1]: row[3] for row in rows if row}
    assert set(lines) == {"no lever", "without batched_views"}, done.stdout
    assert lines["no lever"] == "1.000"
    spec = importlib.util.spec_from_file_location("gpu_check", repository / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    rendered = gpu_check.table([{"name": "levers daml", "status": "ok", "text": done.stdout}])
    assert "no lever " in rendered and "(1.000 x)" in rendered and "without batched_views " in rendered


def test_views_of_two_precisions_are_each_warped_in_its_own():
    augmenter = BatchAugmenter(ViewAugmentation(color_jitter=0.0), 16)
    images = torch.rand(2, 3, 16, 16)
    torch.manual_seed(0)
    separate = [augmenter(images)[0], augmenter(images.double())[0]]
    torch.manual_seed(0)
    together = [
        views
        for views, *_ in augment_together([(augmenter, images, None, None), (augmenter, images.double(), None, None)])
    ]
    assert [v.dtype for v in together] == [torch.float32, torch.float64]
    assert all(torch.equal(a, b) for a, b in zip(together, separate, strict=True))

"""Device-dependent levers: channels-last by default only on CUDA under mixed precision, the fused
Adam only for CUDA parameters, and checkpoints that cross between the two implementations."""

from __future__ import annotations

import pytest
import torch

from posealign.config import load_config
from posealign.config_checks import check_values
from posealign.engine.device_settings import build_adam, keep_own_implementation, use_channels_last
from posealign.errors import UserError

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("task", "overrides", "on_cpu", "on_cuda"),
    [
        (None, [], False, False),  # default: auto, fp32
        (None, ["run.amp=bf16"], False, True),
        (None, ["run.amp=fp16"], False, True),
        (None, ["run.amp=bf16", "run.channels_last=false"], False, False),
        ("benchmark", [], True, True),  # the benchmark tasks keep channels-last on the CPU
        ("benchmark_paper_scale", [], True, True),
    ],
)
def test_channels_last(task, overrides, on_cpu, on_cuda):
    config = load_config("daml", task, ["run.out=/tmp/posealign-test", *overrides])
    assert use_channels_last(config, CPU) is on_cpu
    assert use_channels_last(config, CUDA) is on_cuda


def test_channels_last_auto_over_a_task_that_sets_it():
    config = load_config("daml", "benchmark", ["run.out=/tmp/posealign-test", "run.channels_last=auto"])
    assert not use_channels_last(config, CPU) and not use_channels_last(config, CUDA)  # fp32


def test_channels_last_other_values_are_refused():
    config = load_config("daml", None, ["run.out=/tmp/posealign-test", "run.channels_last=sometimes"])
    with pytest.raises(UserError, match="run.channels_last=sometimes: must be auto, true or false"):
        check_values(config, check_roots=False)


def test_adam_is_the_default_implementation_on_the_cpu():
    optimizer = build_adam([torch.nn.Parameter(torch.ones(3))], 1e-3, CPU)
    assert not optimizer.param_groups[0]["fused"]


def stepped_adam(fused: bool) -> tuple[torch.optim.Adam, torch.nn.Parameter]:
    parameter = torch.nn.Parameter(torch.arange(4.0))
    optimizer = torch.optim.Adam([parameter], lr=0.1, fused=fused or None)
    optimizer.register_load_state_dict_pre_hook(keep_own_implementation)
    for _ in range(2):
        parameter.grad = torch.full_like(parameter, 0.5)
        optimizer.step()
    return optimizer, parameter


@pytest.mark.parametrize("saved_fused", [True, False])
def test_checkpoint_of_the_other_implementation_resumes_with_this_one(saved_fused):
    # The fused kernel runs on the CPU too (torch >= 2.4), so both directions are checked here.
    saved, _ = stepped_adam(saved_fused)
    state = saved.state_dict()
    loading, parameter = stepped_adam(not saved_fused)
    loading.load_state_dict(state)
    assert bool(loading.param_groups[0]["fused"]) is (not saved_fused)
    step = loading.state[parameter]["step"]
    assert float(step) == 2 and step.dtype == torch.float32
    parameter.grad = torch.ones_like(parameter)
    loading.step()  # each implementation checks where its step counters live
    assert float(loading.state[parameter]["step"]) == 3

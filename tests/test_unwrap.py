"""unwrap_model sees through torch.compile as well as DistributedDataParallel: a compiled student
hands the teacher its plain keys."""

from __future__ import annotations

import torch
from torch import nn

from posealign.config import load_config
from posealign.models.unwrap import unwrap_model
from posealign.multilevel_alignment import MultiLevelAlignment


def test_unwrap_peels_torch_compile():
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    compiled = torch.compile(network)  # wrapping only; nothing compiles until it is called
    assert next(iter(compiled.state_dict())).startswith("_orig_mod.")
    assert unwrap_model(compiled) is network
    assert unwrap_model(network) is network


def test_teacher_starts_from_a_compiled_student():
    torch.manual_seed(0)
    config = load_config("mean_teacher", "benchmark", ["data.image_size=32", "data.heatmap_size=32"])
    method = MultiLevelAlignment(config, 16)
    plain = method.student
    with torch.no_grad():
        for parameter in plain.parameters():
            parameter.add_(1.0)
    method.student = torch.compile(plain)
    method.start_adaptation()
    for name, tensor in plain.state_dict().items():
        assert torch.equal(method.teacher.state_dict()[name], tensor), name
    assert method.evaluation_model() is method.teacher

"""One interleaved pass with per-domain BatchNorm statistics gives what one pass per domain gives
(the released code's ``student(x_s)`` then ``student(x_t)``): outputs, gradients, every running
statistic and a few training steps' parameters.

The two paths add the same numbers in another order (convolutions over a batch of 2B instead of
two of B, the running-statistics update in float instead of the CPU kernel's double), so they agree
to rounding, not bit for bit: float64 is compared at 1e-10 (an error in a formula shows at 1e-2),
the training steps in float32 at float32's tolerance.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from posealign.models.domain_batchnorm import (
    DomainBatchNorm2d,
    deinterleave,
    interleave,
    one_pass_possible,
    per_domain_statistics,
)
from posealign.models.simple_baseline import SimpleBaseline

torch.set_num_threads(1)
TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def _tiny_model(dtype=torch.float64) -> SimpleBaseline:
    torch.manual_seed(0)
    model = SimpleBaseline(5, "resnet18", None, backbone_stages=2, deconv_layers=2, deconv_channels=8).to(dtype)
    with torch.no_grad():  # running statistics away from their initial 0 / 1, so the update's formula shows
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    model.one_pass_domains = True  # on the CPU too (by default it runs on CUDA only)
    return model.train()


def _pair(dtype=torch.float64) -> tuple[SimpleBaseline, SimpleBaseline]:
    one_pass = _tiny_model(dtype)
    per_domain = copy.deepcopy(one_pass)
    per_domain.one_pass_domains = False
    return one_pass, per_domain


def _assert_same_state(mine: nn.Module, theirs: nn.Module, **tolerance) -> None:
    for (name, a), b in zip(mine.state_dict().items(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name, **tolerance)


def test_interleave_puts_each_domain_s_samples_side_by_side_and_back():
    batch = torch.arange(6).view(6, 1)
    assert interleave(batch, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert interleave(batch, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert torch.equal(deinterleave(interleave(batch, 3), 3), batch)


@pytest.mark.parametrize("domains", [2, 3])
def test_one_batchnorm_call_normalises_each_domain_and_updates_as_sequential_calls(domains):
    torch.manual_seed(1)
    one_pass = DomainBatchNorm2d(4, momentum=0.3).double()
    with torch.no_grad():
        one_pass.running_mean.uniform_(-1, 1)
        one_pass.running_var.uniform_(0.5, 2)
        one_pass.weight.uniform_(0.5, 1.5)
        one_pass.bias.uniform_(-0.5, 0.5)
    sequential = nn.BatchNorm2d(4, momentum=0.3).double()
    sequential.load_state_dict(one_pass.state_dict())
    # Each domain its own scale and offset, so joint statistics would give other numbers.
    parts = [torch.randn(3, 4, 5, 5, dtype=torch.float64) * (d + 1) + 2 * d for d in range(domains)]
    upstream = torch.randn(domains * 3, 4, 5, 5, dtype=torch.float64)

    inputs = torch.cat(parts).requires_grad_()
    one_pass.domains = domains
    output = deinterleave(one_pass(interleave(inputs, domains)), domains)
    (output * upstream).sum().backward()

    reference_inputs = [part.clone().requires_grad_() for part in parts]
    reference = torch.cat([sequential(part) for part in reference_inputs])
    (reference * upstream).sum().backward()

    torch.testing.assert_close(output, reference, **TIGHT)
    torch.testing.assert_close(inputs.grad, torch.cat([part.grad for part in reference_inputs]), **TIGHT)
    torch.testing.assert_close(one_pass.weight.grad, sequential.weight.grad, **TIGHT)
    torch.testing.assert_close(one_pass.bias.grad, sequential.bias.grad, **TIGHT)
    _assert_same_state(one_pass, sequential, **TIGHT)
    assert int(one_pass.num_batches_tracked) == domains


def test_the_student_s_one_pass_equals_one_pass_per_domain_outputs_gradients_and_statistics():
    one_pass, per_domain = _pair()
    generator = torch.Generator().manual_seed(2)
    source = torch.rand(3, 3, 32, 32, generator=generator, dtype=torch.float64)
    target = torch.rand(3, 3, 32, 32, generator=generator, dtype=torch.float64) * 0.5 + 0.4
    upstream = torch.randn(6, 5, 16, 16, generator=generator, dtype=torch.float64)
    for _ in range(2):  # the second call starts from the running statistics the first left
        for model in (one_pass, per_domain):
            model.zero_grad()
            heatmaps, features = model(torch.cat([source, target]), domains=2)
            ((heatmaps * upstream).sum() + features.square().mean()).backward()
            model.outputs = heatmaps.detach(), features.detach()
        for mine, theirs in zip(one_pass.outputs, per_domain.outputs, strict=True):
            torch.testing.assert_close(mine, theirs, **TIGHT)
        for (name, a), b in zip(one_pass.named_parameters(), per_domain.parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, msg=name, **TIGHT)
        _assert_same_state(one_pass, per_domain, **TIGHT)
    # And the per-domain statistics are not the joint batch's (what the test would miss otherwise).
    joint = copy.deepcopy(per_domain)
    joint(torch.cat([source, target]))
    assert not torch.allclose(joint.deconv[1].running_mean, per_domain.deconv[1].running_mean)


def test_the_one_pass_runs_only_where_its_view_and_modules_allow():
    model = _tiny_model(torch.float32)
    images = torch.rand(4, 3, 32, 32)
    assert one_pass_possible(model, images)
    assert not one_pass_possible(model, images.to(memory_format=torch.channels_last))
    # a channels-last network fed contiguous images (what the augmentation hands it) makes
    # channels-last activations: the BatchNorm view would copy at every layer
    assert not one_pass_possible(copy.deepcopy(model).to(memory_format=torch.channels_last), images)
    assert not one_pass_possible(nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model)), images)
    cumulative = copy.deepcopy(model)
    cumulative.deconv[1].momentum = None
    assert not one_pass_possible(cumulative, images)
    # Outside per_domain_statistics every DomainBatchNorm2d is a plain BatchNorm2d again.
    with per_domain_statistics(model, 2):
        assert {m.domains for m in model.modules() if isinstance(m, DomainBatchNorm2d)} == {2}
    assert {m.domains for m in model.modules() if isinstance(m, DomainBatchNorm2d)} == {1}


def test_a_channels_last_batch_takes_one_pass_per_domain_with_the_same_numbers():
    one_pass, per_domain = _pair()
    images = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    heatmaps, _ = one_pass(images.to(memory_format=torch.channels_last), domains=2)
    reference, _ = per_domain(images, domains=2)
    torch.testing.assert_close(heatmaps, reference, **TIGHT)
    _assert_same_state(one_pass, per_domain, **TIGHT)


def test_training_steps_of_the_method_match_one_pass_per_domain():
    """Three adaptation steps of daml (stylization, augmentation, teacher, occlusion, every loss,
    Adam, EMA) from the same seed: the student's and teacher's parameters and buffers agree."""
    from posealign.config import load_config
    from posealign.data.batch import Batch
    from posealign.multilevel_alignment import MultiLevelAlignment

    overrides = ["data.image_size=32", "data.heatmap_size=32", "model.deconv_channels=16", "train.batch_size=2"]
    overrides += ["align.feature.channels=[16,16,16]"]
    torch.manual_seed(0)
    built = MultiLevelAlignment(load_config("daml", "benchmark", overrides), 4)
    assert built.config.mean_teacher.student_batchnorm == "per_domain"
    results = []
    for one_pass in (True, False):
        method = copy.deepcopy(built)
        method.student.one_pass_domains = one_pass
        method.set_train_mode()
        optimizer = torch.optim.Adam(method.student.parameters(), lr=1e-3)
        torch.manual_seed(3)
        for step in range(3):
            generator = torch.Generator().manual_seed(step)
            source, target = (
                Batch(
                    images=torch.rand(2, 3, 32, 32, generator=generator),
                    keypoints=torch.rand(2, 4, 2, generator=generator) * 24 + 4,
                    visible=torch.ones(2, 4, dtype=torch.bool),
                    indices=torch.arange(2) + 10 * domain,
                )
                for domain in range(2)
            )
            optimizer.zero_grad()
            method.discriminator.zero_grad()
            method.forward_backward(source, target, "adapt", 0.5, step)
            optimizer.step()
            method.update_teacher()
        results.append(method)
    for name in ("student", "teacher"):
        _assert_same_state(getattr(results[0], name), getattr(results[1], name), rtol=1e-4, atol=1e-6)


def test_on_the_cpu_the_default_is_one_pass_per_domain():
    torch.manual_seed(0)
    default = SimpleBaseline(5, "resnet18", None, backbone_stages=2, deconv_layers=2, deconv_channels=8).train()
    assert default.one_pass_domains is None
    forced = copy.deepcopy(default)
    forced.one_pass_domains = True
    images = torch.rand(8, 3, 32, 32)
    for model, batches_seen in ((default, [4, 4]), (forced, [8])):  # two passes of 4, or one of 8
        seen = []
        model.backbone[1].register_forward_pre_hook(lambda module, inputs, seen=seen: seen.append(len(inputs[0])))
        model(images, domains=2)
        assert seen == batches_seen

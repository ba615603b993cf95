"""The whole flow: round trips, the domain shift's density, gradients, sizes of the two configs."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from tests.conftest import real_photo
from unpaired_sr.common.config import load_config
from unpaired_sr.degradation.checkpoint import build_flow
from unpaired_sr.degradation.config import FlowConfig
from unpaired_sr.degradation.flow import (
    DegradationFlow,
    FlowObjective,
    bits_per_dim,
    count_parameters,
    domain_bits_per_dim,
)
from unpaired_sr.degradation.prior import LevelShift


def photo_batch(size: int = 32) -> torch.Tensor:
    names = ("astronaut", "coffee")
    return torch.stack([torch.from_numpy(real_photo(n, size).transpose(2, 0, 1).copy()) for n in names])


@pytest.mark.parametrize("config_file", ["configs/deflow_light.yaml", "configs/deflow_standard.yaml"])
def test_round_trip_both_configs_on_random_and_real_images(config_file, device):
    config = load_config(FlowConfig, config_file)
    flow = build_flow(config.model).to(device)
    images = torch.cat([photo_batch(32), torch.rand(1, 3, 32, 32)]).to(device)
    flow.train()
    flow.encode(images)  # ActNorm's data-dependent initialisation, as in training
    flow.eval()
    with torch.no_grad():
        latents, _ = flow.encode(images)
        again = flow.decode(latents, flow.condition(images))
    assert (again - images).abs().max() < 1e-4


def tf32_rounded(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` rounded to TF32's 10-bit mantissa, as cuDNN rounds float32 convolution inputs on recent GPUs."""
    bits = tensor.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def test_round_trip_holds_when_convolutions_round_like_tf32(monkeypatch):
    # What CUDA does by default, emulated on the CPU: every float32 convolution rounds its inputs to TF32.
    # The coupling nets may (forward and inverse see the same input); the invertible mixing must not
    # (measured before it was a float32 matmul: a 2e-3 round-trip error here and on an H200).
    conv2d = torch.nn.functional.conv2d

    def tf32_conv2d(x, weight, *args, **kwargs):
        if x.dtype == torch.float32:
            x, weight = tf32_rounded(x), tf32_rounded(weight)
        return conv2d(x, weight, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", tf32_conv2d)
    flow = build_flow(load_config(FlowConfig, "configs/deflow_light.yaml").model)
    images = torch.cat([photo_batch(32), torch.rand(1, 3, 32, 32)])
    flow.train()
    flow.encode(images)
    flow.eval()
    with torch.no_grad():
        latents, _ = flow.encode(images)
        again = flow.decode(latents, flow.condition(images))
    assert (again - images).abs().max() < 1e-4


def test_a_training_step_in_channels_last_matches_nchw():
    # degradation.train keeps the flow channels-last on the CPU, oneDNN's faster layout: the same step, to rounding.
    config = load_config(FlowConfig, "configs/deflow_light.yaml")
    generator = torch.Generator().manual_seed(0)
    clean_lr, real_lr = photo_batch(32), torch.rand(2, 3, 32, 32, generator=generator)
    dequant_noise = torch.rand(4, 3, 32, 32, generator=generator) - 0.5
    steps = []
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)  # the same initial weights
        flow = build_flow(config.model, seed=0).to(memory_format=layout).train()
        objective = FlowObjective(flow, config.model.dequant_bins, config.train.content_penalty)
        inputs = [tensor.contiguous(memory_format=layout) for tensor in (clean_lr, real_lr, dequant_noise)]
        torch.manual_seed(1)  # the condition encoder's training noise: the same draws for both layouts
        with torch.no_grad():
            objective(*inputs)  # ActNorm's data initialisation
        loss = objective(*inputs)[0]
        loss.backward()
        steps.append((loss.detach(), [p.grad.clone() for p in flow.parameters() if p.grad is not None]))
    (loss_nchw, grads_nchw), (loss_cl, grads_cl) = steps
    conv = next(
        module for module in flow.modules() if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3)
    )
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    torch.testing.assert_close(loss_cl, loss_nchw, rtol=1e-5, atol=1e-6)
    assert len(grads_cl) == len(grads_nchw) > 50
    for grad_cl, grad_nchw in zip(grads_cl, grads_nchw):
        torch.testing.assert_close(grad_cl, grad_nchw, rtol=1e-3, atol=1e-5)


def test_parameter_counts_match_the_config_names():
    light = count_parameters(build_flow(load_config(FlowConfig, "configs/deflow_light.yaml").model))
    standard = count_parameters(build_flow(load_config(FlowConfig, "configs/deflow_standard.yaml").model))
    assert 0.8e6 < light < 1.2e6
    assert 4.0e6 < standard < 5.0e6


def test_level_shift_density_matches_torch_distributions():
    torch.manual_seed(0)
    level = LevelShift(5)
    with torch.no_grad():
        level.mean.normal_()
        level.raw_content_scale.normal_()
        level.noise_factor.normal_()
    eps = torch.randn(2, 5, 3, 4)
    covariance = level.covariance().float()
    reference = torch.distributions.MultivariateNormal(level.mean.detach(), covariance_matrix=covariance)
    expected = reference.log_prob(eps.permute(0, 2, 3, 1)).sum(dim=(1, 2))
    torch.testing.assert_close(level.log_prob(eps), expected, rtol=1e-5, atol=1e-3)


def test_transfer_produces_the_real_covariance():
    torch.manual_seed(0)
    level = LevelShift(3)
    with torch.no_grad():
        level.mean.copy_(torch.tensor([0.5, -1.0, 0.0]))
        level.raw_content_scale.copy_(torch.tensor([-5.0, 0.0, 1.0]))  # a = 0.99, 0.5, 0.27
        level.noise_factor.copy_(torch.tensor([[0.5, 0.0, 0.0], [0.3, 0.2, 0.0], [0.0, 0.0, 1.0]]))
    clean = torch.randn(4000, 3, 4, 4)
    real = level.transfer(clean, torch.randn_like(clean), temperature=1.0)
    samples = real.permute(0, 2, 3, 1).reshape(-1, 3).double()
    torch.testing.assert_close(samples.mean(0), level.mean.double().detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), level.covariance().detach(), atol=0.03, rtol=0)
    still = level.transfer(clean, torch.randn_like(clean), temperature=0.0)  # no fresh noise at T = 0
    torch.testing.assert_close(still, level.transfer(clean, torch.randn_like(clean), temperature=0.0))


@pytest.mark.parametrize("conditional_shift", [False, True])
def test_every_parameter_gets_a_gradient(conditional_shift):
    flow = DegradationFlow(
        num_levels=2,
        num_steps=2,
        hidden_channels=16,
        cond_channels=8,
        cond_blocks=1,
        conditional_shift=conditional_shift,
    )
    images = photo_batch(16)
    flow.train()
    flow.encode(images)
    # Leave the zero-initialised convolutions so gradients can flow through every subnet.
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    nll_clean, nll_real = domain_bits_per_dim(flow, images, images.flip(3), num_bins=64)
    (nll_clean + nll_real + flow.shift.content_penalty()).backward()
    missing = [name for name, p in flow.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("clean_only_flow", [False, True])
def test_with_a_clean_only_flow_real_images_train_the_shift_alone(clean_only_flow):
    kwargs = dict(num_levels=2, num_steps=2, hidden_channels=16, cond_channels=8, cond_blocks=1)
    flow = DegradationFlow(**kwargs, conditional_shift=True, clean_only_flow=clean_only_flow).train()
    images = photo_batch(16)
    flow.encode(images)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    nll_clean, nll_real = domain_bits_per_dim(flow, images, images.flip(3), num_bins=64)
    nll_real.backward()  # the real domain's loss alone
    touched = {
        name.split(".")[0] for name, p in flow.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
    }
    assert touched == ({"shift"} if clean_only_flow else {"shift", "levels", "encoder"})
    # Its value does not change: only where its gradient goes.
    twin = DegradationFlow(**kwargs, conditional_shift=True, clean_only_flow=not clean_only_flow).train()
    twin.load_state_dict(flow.state_dict())
    noise = torch.rand(2 * images.shape[0], *images.shape[1:]) - 0.5
    torch.testing.assert_close(
        domain_bits_per_dim(flow, images, images.flip(3), 64, noise),
        domain_bits_per_dim(twin, images, images.flip(3), 64, noise),
    )


def test_degrade_is_differentiable_and_seeded():
    flow = DegradationFlow(num_levels=2, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=1).eval()
    images = photo_batch(16)
    first = flow.degrade(images, 0.8, generator=torch.Generator().manual_seed(3))
    again = flow.degrade(images, 0.8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    first.sum().backward()
    assert flow.shift.levels[0].noise_factor.grad.abs().sum() > 0


def test_bits_per_dim_of_a_uniform_density_is_the_bin_count():
    # A uniform density on [0, 1]^D has log p = 0: exactly log2(bins) bits per dimension.
    assert bits_per_dim(torch.zeros(1), num_dims=12, num_bins=64).item() == pytest.approx(math.log2(64))


def test_conditional_level_shift_density_and_transfer_agree():
    torch.manual_seed(0)
    level = LevelShift(3, cond_channels=2)
    with torch.no_grad():
        level.noise_factor.normal_()
        level.local.weight.normal_(std=0.3)
        level.local.bias.normal_(std=0.3)
    eps, cond = torch.randn(2, 3, 2, 3), torch.randn(2, 2, 2, 3)
    mean, log_gain = level._mean_and_log_gain(cond)
    gain = torch.exp(log_gain)
    scale = level.content_scale()
    factor = level.noise_factor
    expected = torch.zeros(2)
    for b in range(2):
        for y in range(2):
            for x in range(3):
                g = torch.diag(gain[b, :, y, x])
                covariance = torch.diag(scale**2) + g @ factor @ factor.T @ g
                local = torch.distributions.MultivariateNormal(mean[b, :, y, x], covariance_matrix=covariance)
                expected[b] += local.log_prob(eps[b, :, y, x])
    torch.testing.assert_close(level.log_prob(eps, cond), expected.detach(), rtol=1e-5, atol=1e-3)
    # With no content and no noise, transfer returns the local mean; the gain touches only the noise.
    out = level.transfer(torch.zeros_like(eps), torch.zeros_like(eps), 1.0, cond)
    torch.testing.assert_close(out, mean.detach(), rtol=0, atol=1e-6)
    content = torch.randn_like(eps)
    still = level.transfer(content, torch.randn_like(eps), 0.0, cond)
    torch.testing.assert_close(still, (mean + scale[None, :, None, None] * content).detach(), rtol=0, atol=1e-6)


def test_conditioning_noise_only_in_training():
    from unpaired_sr.degradation.encoder import ConditionEncoder

    image = torch.rand(2, 3, 16, 16)
    encoder = ConditionEncoder(2, channels=8, num_blocks=1, noise_std=0.03)
    torch.manual_seed(0)
    first = encoder(image)[0]
    assert not torch.equal(first, encoder(image)[0])  # fresh noise each call
    encoder.eval()
    assert torch.equal(encoder(image)[0], encoder(image)[0])


def test_degrade_on_the_device_matches_the_cpu(device):
    # The flow's own sampling path (the shipped configs sample without it and need an image-noise estimate).
    # On the CPU this compares the CPU with itself, but still runs the path: with --device cuda, the GPU.
    model = dataclasses.replace(load_config(FlowConfig, "configs/deflow_light.yaml").model, sample_latent_shift=True)
    flow = build_flow(model)
    images = photo_batch(32)
    flow.train()
    flow.encode(images)
    flow.eval()
    noise = flow.sample_noise(2, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        on_cpu = flow.degrade(images, 1.0, noise=noise)
        on_device = flow.to(device).degrade(images.to(device), 1.0, noise=[n.to(device) for n in noise])
    assert (on_device.cpu() - on_cpu).abs().max() < 1e-3

"""The samples' discriminator: what it may see, and that its judgement reaches the flow."""

from __future__ import annotations

import pytest
import torch

from unpaired_sr.degradation.adversarial import (
    PatchDiscriminator,
    discriminator_accuracy,
    discriminator_loss,
    generator_loss,
    quantize_8bit,
)
from unpaired_sr.degradation.flow import DegradationFlow, FlowObjective


def test_it_is_blind_to_colour_casts_and_brightness():
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(width=8, high_pass_sigma=2.0).eval()
    images = torch.rand(2, 3, 32, 32) * 0.5 + 0.25
    cast = images + torch.tensor([0.08, -0.05, 0.02]).view(1, 3, 1, 1)
    logits = discriminator(images)
    assert logits.shape == (2, 1, 8, 8)
    torch.testing.assert_close(discriminator(cast), logits, atol=1e-5, rtol=0)
    assert not torch.allclose(discriminator(images + 0.05 * torch.randn_like(images)), logits, atol=1e-3)


def test_8bit_rounding_passes_the_gradient_straight_through():
    x = torch.tensor([-0.2, 0.1234, 0.5, 1.3], requires_grad=True)
    y = quantize_8bit(x)
    assert torch.equal(y.detach() * 255, torch.round(y.detach() * 255)) and y.min() == 0 and y.max() == 1
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 0.0]))  # clamped ends pass nothing


def test_hinge_losses_and_accuracy():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.2])
    assert float(discriminator_loss(real, fake)) == pytest.approx((0 + 0.5) / 2 + (0 + 1.2) / 2)
    assert float(generator_loss(fake)) == pytest.approx(1.4)
    assert float(discriminator_accuracy(real, fake)) == 0.75


def test_the_judgement_reaches_the_flow_and_its_domain_shift():
    torch.manual_seed(0)
    flow = DegradationFlow(num_levels=2, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=1)
    objective = FlowObjective(flow, num_bins=64, content_penalty=0.01)
    clean_lr, real_lr = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    loss, _, _, samples = objective(clean_lr, real_lr, num_samples=2, temperature=1.0)
    assert samples.shape == (2, 3, 16, 16)
    assert objective(clean_lr, real_lr)[3] is None
    discriminator = PatchDiscriminator(width=8).requires_grad_(False)
    generator_loss(discriminator(quantize_8bit(samples))).backward()
    for level in flow.shift.levels:
        assert level.noise_factor.grad is not None and level.noise_factor.grad.abs().sum() > 0
    assert all(p.grad is None for p in discriminator.parameters())

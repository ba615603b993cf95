"""A patch discriminator that holds the flow's *samples* to the real domain.

Likelihood alone does not pin what the flow samples. The flow is shared by
both domains and sees the noise it models, so it can learn to map real images
to near-standard latents by itself; the latent shift that is meant to carry the
degradation then stays small, and what ``degrade`` adds is whatever the inverse
flow's local gain makes of it (measured: flat areas 2-4x too clean, textured
ones up to 2x too noisy). CycleSR keeps its translation network in the real
domain with a GAN loss; this is the same idea on the flow's output: a small
patch discriminator tells real LR crops from ``degrade(clean LR)`` crops of
*other* photos, and the flow gets its gradient through ``degrade``.

Both see only the detail above a Gaussian low-pass (``high_pass_sigma``): the
two photo sets differ in content, and a discriminator that could use colour
and brightness would push the flow to paint one set's look onto the other.
Fakes are rounded to 8 bits (straight-through), as real files are, so the
quantization lattice gives nothing away.

Hinge loss (Lim & Ye 2017; Miyato et al. 2018), spectral normalisation in
every convolution for a discriminator that stays smooth with little data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from unpaired_sr.common.filters import gaussian_blur
from unpaired_sr.common.training import autocast


def detail(images: torch.Tensor, high_pass_sigma: float) -> torch.Tensor:
    """What the discriminator sees: the image minus its Gaussian low-pass, x10 to unit-ish scale."""
    return (images - gaussian_blur(images, high_pass_sigma)) * 10


def quantize_8bit(images: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 1/255 steps; the gradient passes as if it were the identity."""
    clamped = images.clamp(0, 1)
    return clamped + (torch.round(clamped * 255) / 255 - clamped).detach()


class PatchDiscriminator(nn.Module):
    """LR crops (B, 3, H, W) -> realness logits per patch (B, 1, H/4, W/4), each seeing 24 x 24 px."""

    def __init__(self, width: int = 32, high_pass_sigma: float = 4.0):
        super().__init__()
        self.high_pass_sigma = high_pass_sigma
        layers = []
        channels = [3, width, width, 2 * width, 2 * width]
        for index, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            stride = 2 if index % 2 else 1
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4 if stride == 2 else 3, stride, 1)), nn.LeakyReLU(0.2)]
        layers.append(spectral_norm(nn.Conv2d(channels[-1], 1, 3, 1, 1)))
        self.body = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(detail(images, self.high_pass_sigma))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator: real patches above +1, fake ones below -1."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the generator (here: the flow's samples): raise the fakes' logits."""
    return -fake_logits.mean()


def flow_adversarial_loss(discriminator: nn.Module, samples: torch.Tensor) -> torch.Tensor:
    """The generator loss of ``samples`` under a frozen ``discriminator``: this term moves the flow, not the judge."""
    discriminator.requires_grad_(False)
    loss = generator_loss(discriminator(samples))
    discriminator.requires_grad_(True)
    return loss


def discriminator_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Share of patches on the right side of 0 (50%: the discriminator cannot tell them apart)."""
    return 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean())


def discriminator_step(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    real_lr: torch.Tensor,
    samples: torch.Tensor,
    amp: bool,
    apply: bool = True,
) -> dict[str, torch.Tensor]:
    """One hinge-loss step of the discriminator (or its DDP wrapper): real crops against the detached samples.

    ``apply`` False (the training step was skipped) computes the loss without
    stepping. Returns ``adv_disc`` and ``disc_accuracy`` for the log.
    """
    with autocast(real_lr.device, amp):
        logits = discriminator(torch.cat([real_lr, samples.detach().to(real_lr.dtype)]))
        real_logits, fake_logits = logits.float().chunk(2)
        loss = discriminator_loss(real_logits, fake_logits)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if apply:
        optimizer.step()
    return {"adv_disc": loss, "disc_accuracy": discriminator_accuracy(real_logits, fake_logits)}

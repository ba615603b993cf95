"""The domain shift in latent space: clean images are N(0, I), real ones N(mu, diag(a^2) + M M^T).

DeFlow models a real latent as the clean latent plus independent noise,
``z_real = z_clean + u`` with ``u ~ N(mu, M M^T)``, so the real covariance is
``I + M M^T``: a real image can only ever have *more* variance than a clean
one in every latent direction. Blur and compression do the opposite to the
fine-detail directions. Here a real latent is

    z_real = mu + a * z_clean + M eta,    eta ~ N(0, I),    a in (0, 1] per channel,

so the real covariance ``diag(a^2) + M M^T`` can shrink directions (blur,
compression: a < 1), grow them and correlate channels (noise: M), and the
mean can shift (colour casts). Likelihood alone cannot tell ``a`` from ``M``
where variance grows; ``content_penalty`` pulls ``a`` towards 1, so variance
is explained by fresh noise unless it must shrink. Each level has its own
``mu, a, M``, shared over positions; ``M`` is a full channel matrix, and
since latent channels hold squeezed neighbourhoods, it captures spatially and
cross-channel correlated noise.

``M`` starts small and random, not at zero: ``M M^T`` has zero gradient at
``M = 0``, so a zero start would never move.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LevelShift(nn.Module):
    """The real-domain Gaussian of one latent level with ``channels`` channels."""

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        self.channels = channels
        self.mean = nn.Parameter(torch.zeros(channels))
        # a = exp(-softplus(raw)): in (0, 1], starts at 0.993.
        self.raw_content_scale = nn.Parameter(torch.full((channels,), -5.0))
        self.noise_factor = nn.Parameter(
            torch.randn(channels, channels, generator=generator) * 0.1 / math.sqrt(channels)
        )

    def content_scale(self) -> torch.Tensor:
        return torch.exp(-F.softplus(self.raw_content_scale))

    def covariance(self) -> torch.Tensor:
        """``diag(a^2) + M M^T`` in float64."""
        scale = self.content_scale().double()
        factor = self.noise_factor.double()
        return torch.diag(scale**2) + factor @ factor.T

    def log_prob(self, eps: torch.Tensor) -> torch.Tensor:
        """Log-density of latents ``(B, C, H, W)`` under the real domain, summed per sample."""
        chol = torch.linalg.cholesky(self.covariance())
        centred = (
            (eps.double() - self.mean.double()[None, :, None, None]).permute(1, 0, 2, 3).reshape(self.channels, -1)
        )
        whitened = torch.linalg.solve_triangular(chol, centred, upper=False)
        num_positions = eps.shape[2] * eps.shape[3]
        mahalanobis = (whitened**2).reshape(self.channels, eps.shape[0], num_positions).sum(dim=(0, 2))
        log_det = 2 * torch.log(torch.diagonal(chol)).sum()
        log_p = -0.5 * (mahalanobis + num_positions * (log_det + self.channels * math.log(2 * math.pi)))
        return log_p.to(eps.dtype)

    def transfer(self, clean_eps: torch.Tensor, noise: torch.Tensor, temperature: float) -> torch.Tensor:
        """Map clean latents to real ones: ``mu + a * eps + temperature * M noise`` (differentiable)."""
        scale = self.content_scale()[None, :, None, None]
        fresh = torch.einsum("ij,bjhw->bihw", self.noise_factor, noise)
        return self.mean[None, :, None, None] + scale * clean_eps + temperature * fresh


def standard_normal_log_prob(eps: torch.Tensor) -> torch.Tensor:
    """Log-density of ``(B, C, H, W)`` latents under N(0, I), summed per sample."""
    return -0.5 * (eps**2 + math.log(2 * math.pi)).sum(dim=(1, 2, 3))


class DomainShift(nn.Module):
    """One ``LevelShift`` per latent level."""

    def __init__(self, level_channels: list[int], seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.levels = nn.ModuleList(LevelShift(channels, generator) for channels in level_channels)

    def log_prob(self, latents: list[torch.Tensor], real: bool) -> torch.Tensor:
        """Log-density of a list of level latents under the clean (N(0, I)) or the real domain."""
        if not real:
            return sum(standard_normal_log_prob(eps) for eps in latents)
        return sum(level.log_prob(eps) for level, eps in zip(self.levels, latents))

    def transfer(self, clean_latents: list[torch.Tensor], noise: list[torch.Tensor], temperature: float):
        return [level.transfer(eps, n, temperature) for level, eps, n in zip(self.levels, clean_latents, noise)]

    def content_penalty(self) -> torch.Tensor:
        """Mean of ``-log a`` over all channels: zero when the shift keeps all content."""
        return torch.cat([F.softplus(level.raw_content_scale) for level in self.levels]).mean()

    @torch.no_grad()
    def summary(self) -> dict[str, float]:
        """Monitor values: mean |mu|, mean std of the fresh noise, mean content scale a."""
        means = torch.cat([level.mean.abs() for level in self.levels])
        noise_std = torch.cat([torch.sqrt((level.noise_factor**2).sum(dim=1)) for level in self.levels])
        scales = torch.cat([level.content_scale() for level in self.levels])
        return {
            "mean_abs_mu_u": means.mean().item(),
            "mean_sigma_u": noise_std.mean().item(),
            "mean_content_scale": scales.mean().item(),
        }

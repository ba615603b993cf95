"""The domain shift in latent space: clean latents are N(0, I); how real ones differ is learned.

DeFlow models a real latent as the clean latent plus independent noise,
``z_real = z_clean + u`` with ``u ~ N(mu, M M^T)``, so the real covariance is
``I + M M^T``: a real image can only ever have *more* variance than a clean
one in every latent direction. Blur and compression do the opposite to the
fine-detail directions, and real noise is signal-dependent (stronger or
weaker depending on brightness and content). Here, at each level::

    z_real = mu(c) + a * z_clean + g(c) * (M eta),    eta ~ N(0, I)

* ``a`` in (0, 1] per channel shrinks directions (blur, compression);
* ``M``, a full channel matrix, adds fresh noise correlated across channels;
  latent channels hold squeezed pixel neighbourhoods, so this is spatially
  and cross-channel correlated noise in the image;
* ``mu(c) = mu + dmu(c)`` shifts the mean (colour casts, local bias);
* ``g(c) > 0`` scales the fresh noise per position and channel from the
  conditioning features ``c`` (the image's low-pass content): signal-dependent
  noise. It touches only the noise, never the clean content. ``dmu`` and
  ``log g`` come from a zero-initialised convolution, so the shift starts
  position-independent; ``conditional=False`` keeps it so (DeFlow-like, with ``a``).

The real density at each position is ``N(mu(c), diag(a^2) + G M M^T G)``
with ``G = diag(g(c))``: one small ``C x C`` Cholesky per latent position
(shared over positions without the condition), in float64. Likelihood alone
cannot tell ``a`` from ``M`` where variance grows; ``content_penalty`` pulls
``a`` towards 1, so variance is explained by fresh noise unless it must
shrink. The temperature scales the fresh noise only.

``M`` starts small and random, not at zero: ``M M^T`` has zero gradient at
``M = 0``, so a zero start would never move.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from unpaired_sr.degradation.layers import ZeroConv2d, bounded_log_scale


class LevelShift(nn.Module):
    """The real-domain Gaussian of one latent level with ``channels`` channels.

    Args:
        channels: latent channels of the level.
        cond_channels: channels of the level's conditioning features; 0 for a
            position-independent shift.
    """

    def __init__(self, channels: int, cond_channels: int = 0, generator: torch.Generator | None = None):
        super().__init__()
        self.channels = channels
        self.mean = nn.Parameter(torch.zeros(channels))
        # a = exp(-softplus(raw)): in (0, 1], starts at 0.993.
        self.raw_content_scale = nn.Parameter(torch.full((channels,), -5.0))
        init = torch.randn(channels, channels, generator=generator) * 0.1 / math.sqrt(channels)
        self.noise_factor = nn.Parameter(init)
        self.local = ZeroConv2d(cond_channels, 2 * channels) if cond_channels else None

    def content_scale(self) -> torch.Tensor:
        return torch.exp(-F.softplus(self.raw_content_scale))

    def covariance(self) -> torch.Tensor:
        """``diag(a^2) + M M^T`` in float64: the covariance where the local gain is 1."""
        scale = self.content_scale().double()
        factor = self.noise_factor.double()
        return torch.diag(scale**2) + factor @ factor.T

    def _mean_and_log_gain(self, cond: torch.Tensor | None):
        mean = self.mean[None, :, None, None]
        if self.local is None:
            return mean, None
        if cond is None:
            raise ValueError("a conditional domain shift needs the level's conditioning features")
        delta, raw_gain = self.local(cond).float().chunk(2, dim=1)
        return mean + delta, bounded_log_scale(raw_gain, 3.0)

    def _whiten(self, eps: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Whitened latents, one (C, 1) vector per position, and the log-determinant of the covariance.

        Shapes ``(B*H*W, C, 1)`` (float64) and ``(B*H*W,)``, or ``(1,)`` when the covariance is shared.
        """
        channels = eps.shape[1]
        mean, log_gain = self._mean_and_log_gain(cond)
        centred = (eps - mean).double().permute(0, 2, 3, 1).reshape(-1, channels, 1)  # one vector per position
        if log_gain is None:
            chol = torch.linalg.cholesky(self.covariance())[None]
        else:
            gain = torch.exp(log_gain).double().permute(0, 2, 3, 1).reshape(-1, channels, 1)
            factor = gain * self.noise_factor.double()[None]  # G M, per position
            scale = self.content_scale().double()
            chol = torch.linalg.cholesky(torch.diag(scale**2)[None] + factor @ factor.transpose(1, 2))
        whitened = torch.linalg.solve_triangular(chol, centred, upper=False)
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(dim=1)
        return whitened, log_det

    def log_prob(self, eps: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Log-density of latents ``(B, C, H, W)`` under the real domain, summed per sample."""
        batch, channels, height, width = eps.shape
        whitened, log_det = self._whiten(eps, cond)
        mahalanobis = (whitened**2).reshape(batch, -1).sum(dim=1)
        log_det = log_det.expand(batch * height * width).reshape(batch, -1).sum(dim=1)
        num_dims = channels * height * width
        log_p = -0.5 * (mahalanobis + log_det + num_dims * math.log(2 * math.pi))
        return log_p.to(eps.dtype)

    @torch.no_grad()
    def mahalanobis(self, eps: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Squared Mahalanobis distance of each latent position under the real domain, ``(B*H*W,)``.

        Chi-square with C degrees of freedom for latents that fit the learned Gaussian.
        """
        whitened, _ = self._whiten(eps, cond)
        return (whitened**2).sum(dim=(1, 2))

    def transfer(
        self, clean_eps: torch.Tensor, noise: torch.Tensor, temperature: float, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Clean latents -> real ones: ``mu(c) + a * eps + temperature * g(c) * (M noise)`` (differentiable)."""
        mean, log_gain = self._mean_and_log_gain(cond)
        scale = self.content_scale()[None, :, None, None]
        fresh = torch.einsum("ij,bjhw->bihw", self.noise_factor, noise)
        if log_gain is not None:
            fresh = fresh * torch.exp(log_gain)
        return mean + scale * clean_eps + temperature * fresh


def standard_normal_log_prob(eps: torch.Tensor) -> torch.Tensor:
    """Log-density of ``(B, C, H, W)`` latents under N(0, I), summed per sample."""
    return -0.5 * (eps**2 + math.log(2 * math.pi)).sum(dim=(1, 2, 3))


class DomainShift(nn.Module):
    """One ``LevelShift`` per latent level.

    Args:
        level_channels: latent channels of each level.
        cond_channels: conditioning channels (0: position-independent shift).
        seed: seeds the initial noise factors.
    """

    def __init__(self, level_channels: list[int], cond_channels: int = 0, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.levels = nn.ModuleList(LevelShift(c, cond_channels, generator) for c in level_channels)

    def log_prob(self, latents: list[torch.Tensor], real: bool, cond: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Log-density of a list of level latents under the clean (N(0, I)) or the real domain."""
        if not real:
            return sum(standard_normal_log_prob(eps) for eps in latents)
        cond = cond if cond is not None else [None] * len(latents)
        return sum(level.log_prob(eps, c) for level, eps, c in zip(self.levels, latents, cond))

    def transfer(
        self,
        clean_latents: list[torch.Tensor],
        noise: list[torch.Tensor],
        temperature: float,
        cond: list[torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        cond = cond if cond is not None else [None] * len(clean_latents)
        return [
            level.transfer(eps, n, temperature, c) for level, eps, n, c in zip(self.levels, clean_latents, noise, cond)
        ]

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

"""Invertible layers of the degradation flow.

Every layer has the same contract (``FlowLayer``)::

    y, logdet = layer(x, cond)          # forward: data -> latent
    x, logdet = layer.inverse(y, cond)  # inverse: latent -> data, logdet negated

with ``logdet`` the log |det dy/dx| per sample, shape ``(B,)``. Layers that do
not use the condition ignore it. Layers never accumulate a running logdet; the
container (``degradation.flow``) sums.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FlowLayer(nn.Module):
    """Base class: ``forward(x, cond) -> (y, logdet)`` and ``inverse(y, cond) -> (x, logdet)``."""

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def _check_channels(x: torch.Tensor, channels: int, layer: str) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{layer} expects (B, {channels}, H, W), got {tuple(x.shape)}")


class ActNorm(FlowLayer):
    """Per-channel affine ``y = (x + bias) * exp(log_scale)``, initialised from the first batch.

    The first forward pass in training mode sets ``bias`` and ``log_scale`` so
    that the batch comes out with zero mean and unit variance per channel (Glow).
    ``initialized`` is a buffer, so a loaded checkpoint does not re-initialise.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x, cond=None):
        _check_channels(x, self.channels, "ActNorm")
        # Under torch.compile the flow has been initialised already (the trainers do it
        # first); skipping the check keeps a data-dependent branch out of the graph.
        if self.training and not torch.compiler.is_compiling() and not self.initialized:
            self._initialize(x)
        logdet = self.log_scale.sum() * x.shape[2] * x.shape[3]
        return (x + self.bias) * torch.exp(self.log_scale), logdet.expand(x.shape[0])

    def inverse(self, y, cond=None):
        _check_channels(y, self.channels, "ActNorm")
        logdet = -self.log_scale.sum() * y.shape[2] * y.shape[3]
        return y * torch.exp(-self.log_scale) - self.bias, logdet.expand(y.shape[0])


class InvertibleConv1x1(FlowLayer):
    """Invertible 1x1 convolution in LU form: ``W = P L (U + diag(sign * exp(log_s)))``.

    ``log|det W| = sum(log_s)`` is exact and cheap; the inverse is computed in
    float64. ``P`` and ``sign`` are fixed at initialisation (a random rotation)
    and kept as buffers so they survive checkpoints.
    """

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        self.channels = channels
        rotation, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))
        permutation, lower, upper = torch.linalg.lu(rotation)
        diagonal = torch.diagonal(upper)
        self.register_buffer("permutation", permutation.float())
        self.register_buffer("sign", torch.sign(diagonal).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), diagonal=-1))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, diagonal=1).float())
        self.log_s = nn.Parameter(torch.log(torch.abs(diagonal)).float())

    def weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        eye = torch.eye(self.channels, device=self.lower.device, dtype=dtype)
        lower = self.lower.to(dtype) * self.lower_mask.to(dtype) + eye
        upper = self.upper.to(dtype) * self.lower_mask.T.to(dtype) + torch.diag(
            self.sign.to(dtype) * torch.exp(self.log_s.to(dtype))
        )
        return self.permutation.to(dtype) @ lower @ upper

    def forward(self, x, cond=None):
        _check_channels(x, self.channels, "InvertibleConv1x1")
        logdet = self.log_s.sum() * x.shape[2] * x.shape[3]
        return mix_channels(self.weight(torch.float64), x), logdet.expand(x.shape[0])

    def inverse(self, y, cond=None):
        _check_channels(y, self.channels, "InvertibleConv1x1")
        logdet = -self.log_s.sum() * y.shape[2] * y.shape[3]
        return mix_channels(torch.linalg.inv(self.weight(torch.float64)), y), logdet.expand(y.shape[0])


def mix_channels(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``matrix @ x`` over the channels of ``x``, in float32 (or float64) whatever autocast says.

    A flow's forward and inverse must undo each other, and its logdet must be
    that of the map it applies. As a 1x1 convolution the mixing would run in
    bf16 under autocast and in TF32 in cuDNN (PyTorch's default for float32
    convolutions on Ampere and later GPUs): both about 1e-3 off, measured as a
    1e-3 round-trip error on an H200. A plain matmul is full float32 unless the
    user lowers ``torch.set_float32_matmul_precision``, and costs the same here.
    """
    x = at_least_float32(x)
    with torch.autocast(x.device.type, enabled=False):
        return torch.einsum("oc,bchw->bohw", matrix.to(x.dtype), x)


class ZeroConv2d(nn.Conv2d):
    """A 3x3 convolution that starts at zero, so the layer it ends starts as the identity."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)


def coupling_subnet(in_channels: int, hidden_channels: int, out_channels: int) -> nn.Sequential:
    """conv3x3 - ReLU - conv1x1 - ReLU - zero-initialised conv3x3."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden_channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, hidden_channels, kernel_size=1),
        nn.ReLU(inplace=True),
        ZeroConv2d(hidden_channels, out_channels),
    )


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Lift bf16/fp16 (from autocast) to float32; leave float32 and float64 alone."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def bounded_log_scale(raw: torch.Tensor, bound: float) -> torch.Tensor:
    """Soft clamp of a log-scale to (-bound, bound): exp() can neither overflow nor vanish."""
    return bound * torch.tanh(raw / bound)


class ConditionalAffineCoupling(FlowLayer):
    """Affine coupling: the second half of the channels is scaled and shifted by a function of
    the first half and the condition; the first half passes through.

    ``y_b = (x_b + shift) * exp(log_scale)`` with ``log_scale`` soft-clamped to
    ``(-scale_bound, scale_bound)``. The subnet's last convolution starts at
    zero, so a new coupling is the identity. With ``sees_image=False`` the
    subnet sees the condition only, and the layer is affine in ``x`` given it.
    """

    def __init__(
        self,
        channels: int,
        cond_channels: int,
        hidden_channels: int,
        scale_bound: float = 1.0,
        sees_image: bool = True,
    ):
        super().__init__()
        if not sees_image and not cond_channels:
            raise ValueError("a coupling that does not see the image needs a condition")
        self.channels, self.cond_channels, self.scale_bound = channels, cond_channels, scale_bound
        self.sees_image = sees_image
        self.num_passive = channels // 2
        self.num_active = channels - self.num_passive
        subnet_in = (self.num_passive if sees_image else 0) + cond_channels
        self.subnet = coupling_subnet(subnet_in, hidden_channels, 2 * self.num_active)

    def _shift_and_log_scale(self, passive: torch.Tensor, cond: torch.Tensor | None):
        if self.cond_channels:
            if cond is None or cond.shape[1] != self.cond_channels or cond.shape[2:] != passive.shape[2:]:
                shape = None if cond is None else tuple(cond.shape)
                raise ValueError(
                    f"coupling expects a condition (B, {self.cond_channels}, {passive.shape[2]}, "
                    f"{passive.shape[3]}), got {shape}"
                )
        inputs = [passive] if self.sees_image else []
        if self.cond_channels:
            inputs.append(cond)
        # The subnet may run in bf16 under autocast; the scale and logdet are float32.
        shift, raw_scale = at_least_float32(self.subnet(torch.cat(inputs, dim=1))).chunk(2, dim=1)
        return shift, bounded_log_scale(raw_scale, self.scale_bound)

    def forward(self, x, cond=None):
        _check_channels(x, self.channels, "ConditionalAffineCoupling")
        passive, active = x[:, : self.num_passive], x[:, self.num_passive :]
        shift, log_scale = self._shift_and_log_scale(passive, cond)
        active = (active + shift) * torch.exp(log_scale)
        return torch.cat([passive, active.to(x.dtype)], dim=1), log_scale.sum(dim=(1, 2, 3))

    def inverse(self, y, cond=None):
        _check_channels(y, self.channels, "ConditionalAffineCoupling")
        passive, active = y[:, : self.num_passive], y[:, self.num_passive :]
        shift, log_scale = self._shift_and_log_scale(passive, cond)
        active = active * torch.exp(-log_scale) - shift
        return torch.cat([passive, active.to(y.dtype)], dim=1), -log_scale.sum(dim=(1, 2, 3))


class Squeeze(FlowLayer):
    """Space-to-depth by 2: (B, C, H, W) -> (B, 4C, H/2, W/2); volume-preserving."""

    def forward(self, x, cond=None):
        if x.ndim != 4 or x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"Squeeze needs (B, C, H, W) with even H and W, got {tuple(x.shape)}")
        return F.pixel_unshuffle(x, 2), x.new_zeros(x.shape[0])

    def inverse(self, y, cond=None):
        if y.ndim != 4 or y.shape[1] % 4:
            raise ValueError(f"Squeeze.inverse needs (B, 4C, H, W), got {tuple(y.shape)}")
        return F.pixel_shuffle(y, 2), y.new_zeros(y.shape[0])


class ConditionalGaussianize(FlowLayer):
    """The learned conditional prior of a split, written as an invertible layer.

    Of the input's channels, the first ``num_kept`` continue up the flow; the
    rest (``x_out``) are standardised with a mean and scale predicted from the
    kept channels and the condition::

        eps = (x_out - mu(kept, cond)) * exp(-log_sigma(kept, cond))

    so that the output ``cat(kept, eps)`` has ``eps ~ N(0, I)`` for clean images.
    The container cuts ``eps`` off as this level's latent. With ``num_kept = 0``
    it is the prior of the last level, predicted from the condition alone; with
    ``sees_image=False`` every split's prior is.
    """

    def __init__(self, channels: int, num_kept: int, cond_channels: int, hidden_channels: int, sees_image: bool = True):
        super().__init__()
        if not 0 <= num_kept < channels:
            raise ValueError(f"num_kept must be in [0, {channels}), got {num_kept}")
        self.sees_image = sees_image and num_kept > 0
        if not self.sees_image and cond_channels == 0:
            raise ValueError("a prior that does not see the kept channels needs a condition")
        self.channels, self.num_kept, self.cond_channels = channels, num_kept, cond_channels
        self.num_out = channels - num_kept
        subnet_in = (num_kept if self.sees_image else 0) + cond_channels
        self.subnet = coupling_subnet(subnet_in, hidden_channels, 2 * self.num_out)

    def _mean_and_log_sigma(self, kept: torch.Tensor, cond: torch.Tensor | None):
        inputs = [kept] if self.sees_image else []
        if self.cond_channels:
            if cond is None or cond.shape[1] != self.cond_channels:
                raise ValueError(f"the split prior expects a condition with {self.cond_channels} channels")
            inputs.append(cond)
        mean, raw = at_least_float32(self.subnet(torch.cat(inputs, dim=1))).chunk(2, dim=1)
        # Bounded like the coupling scales: a prior sharper than e^-3 would only overfit.
        return mean, bounded_log_scale(raw, 3.0)

    def forward(self, x, cond=None):
        _check_channels(x, self.channels, "ConditionalGaussianize")
        kept, out = x[:, : self.num_kept], x[:, self.num_kept :]
        mean, log_sigma = self._mean_and_log_sigma(kept, cond)
        eps = (out - mean) * torch.exp(-log_sigma)
        return torch.cat([kept, eps.to(x.dtype)], dim=1), -log_sigma.sum(dim=(1, 2, 3))

    def inverse(self, y, cond=None):
        _check_channels(y, self.channels, "ConditionalGaussianize")
        kept, eps = y[:, : self.num_kept], y[:, self.num_kept :]
        mean, log_sigma = self._mean_and_log_sigma(kept, cond)
        out = eps * torch.exp(log_sigma) + mean
        return torch.cat([kept, out.to(y.dtype)], dim=1), log_sigma.sum(dim=(1, 2, 3))

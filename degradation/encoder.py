"""The conditioning network: a light multi-scale CNN on a low-pass version of the image.

DeFlow conditions on the input downscaled by 4: what is left at that scale
is content that clean and real images share (noise, compression artefacts and
fine blur mostly are not), so the flow can spend its latent space on exactly
the part that differs. Unlike DeFlow's pretrained 23-block RRDB, this encoder
is small and trained jointly with the flow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unpaired_sr.common.matlab_resize import downscale_torch

LOW_PASS_FACTOR = 4


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ConditionEncoder(nn.Module):
    """Image (B, 3, H, W) -> one feature map per flow level, level ``l`` at (H / 2^(l+1), W / 2^(l+1)).

    Args:
        num_levels: flow levels L.
        channels: feature channels of every output.
        num_blocks: residual blocks at the low-pass resolution (H / 4).
        noise_std: in training, Gaussian noise of this std is added to the low-pass image (DeFlow: 0.03),
            so that the condition reveals less of which domain an image comes from.
    """

    def __init__(
        self, num_levels: int, channels: int = 32, num_blocks: int = 2, in_channels: int = 3, noise_std: float = 0.0
    ):
        super().__init__()
        self.num_levels, self.noise_std = num_levels, noise_std
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            *[ResidualBlock(channels) for _ in range(num_blocks)],
        )
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)) for _ in range(num_levels)
        )

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        low_pass = downscale_torch(image, LOW_PASS_FACTOR)
        if self.training and self.noise_std > 0:
            low_pass = low_pass + self.noise_std * torch.randn_like(low_pass)
        features = self.body(low_pass)  # (B, C, H/4, W/4)
        pyramid = []
        for level, head in enumerate(self.heads):
            factor = 2 ** (level + 1) / LOW_PASS_FACTOR  # level size relative to H/4
            if factor < 1:
                resized = F.interpolate(features, scale_factor=round(1 / factor), mode="nearest")
            elif factor > 1:
                resized = F.avg_pool2d(features, kernel_size=round(factor))
            else:
                resized = features
            pyramid.append(head(resized))
        return pyramid

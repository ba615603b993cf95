"""VDSR-style super-resolution network (CycleSR's SR_nb 20, SR_nf 64).

Two forms with the same 20 convolutions and a global residual over the
bicubic upsampling (MATLAB-style, as the LR images were made):

* ``pre_upsample`` (faithful VDSR): upsample first, convolve at HR size;
* ``post_upsample``: convolve at LR size, pixel-shuffle to HR at the end.
  At x4 that is ~16x fewer FLOPs for the same depth and width.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from data_tools.matlab_resize import imresize_torch

Form = Literal["pre_upsample", "post_upsample"]
Norm = Literal["none", "batch", "instance"]


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class VDSR(nn.Module):
    """``num_layers`` 3x3 convolutions with ReLU; output = bicubic(lr) + learned residual.

    Args:
        scale: 2, 3 or 4.
        form: ``pre_upsample`` or ``post_upsample``.
        num_channels: image channels.
        num_features: width of the hidden convolutions.
        num_layers: convolutions in all (VDSR: 20).
        norm: ``none``, ``batch`` or ``instance`` after each hidden convolution.
    """

    def __init__(self, scale: int = 4, form: Form = "post_upsample", num_channels: int = 3, num_features: int = 64,
                 num_layers: int = 20, norm: Norm = "none"):  # fmt: skip
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        if form not in ("pre_upsample", "post_upsample"):
            raise ValueError(f"form must be pre_upsample or post_upsample, got {form!r}")
        if num_layers < 3:
            raise ValueError(f"num_layers must be at least 3, got {num_layers}")
        self.scale, self.form, self.num_layers = scale, form, num_layers
        out_channels = num_channels * scale**2 if form == "post_upsample" else num_channels
        layers: list[nn.Module] = [nn.Conv2d(num_channels, num_features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(num_layers - 2):
            layers += [nn.Conv2d(num_features, num_features, 3, padding=1, bias=norm == "none")]
            layers += [_norm(norm, num_features), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(num_features, out_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.shuffle = nn.PixelShuffle(scale) if form == "post_upsample" else nn.Identity()
        # He initialisation, as VDSR: PyTorch's default conv init shrinks the signal ~6x per
        # ReLU layer, so 20 layers would start (and stay) dead. The last layer starts small,
        # so a new network is close to bicubic.
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.body[-1].weight.data.mul_(0.1)

    @property
    def receptive_radius(self) -> int:
        """How far (in LR pixels) an output pixel sees; tiles need this much margin, plus bicubic's 2."""
        radius = self.num_layers  # one pixel per 3x3 convolution
        if self.form == "pre_upsample":
            radius = -(-radius // self.scale)
        return radius + 2

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) in [0, 1] -> (B, C, h * scale, w * scale), not clamped."""
        upsampled = imresize_torch(lr, self.scale)
        if self.form == "pre_upsample":
            return upsampled + self.body(upsampled)
        return upsampled + self.shuffle(self.body(lr))

    def flops_per_lr_pixel(self) -> int:
        """Multiply-adds x 2 of the convolutions per LR pixel (bicubic and ReLUs not counted)."""
        total = 0
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                total += 2 * module.in_channels * module.out_channels * 9
        return total * (self.scale**2 if self.form == "pre_upsample" else 1)

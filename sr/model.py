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

from unpaired_sr.common.matlab_resize import imresize_torch, upscale_by_convolution

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

    def __init__(
        self,
        scale: int = 4,
        form: Form = "post_upsample",
        num_channels: int = 3,
        num_features: int = 64,
        num_layers: int = 20,
        norm: Norm = "none",
    ):
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
        # ReLU layer, so 20 layers would start (and stay) dead. The last layer starts at zero,
        # so a new network is exactly bicubic: scaled-down random weights there (x0.1) made a
        # random residual of ~14/255 RMS, as large as the real residual of clean pairs; L1 with
        # Adam then silenced it by killing the last ReLU layers within 200 steps (README, SR).
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)
        # The convolutions see images centred on 0 (EDSR subtracts the mean too): measured, it keeps
        # the last ReLU layer about 1.5x as active. A buffer, so that networks saved before it
        # (without it) load with offset 0 and compute what they always did (_load_from_state_dict).
        self.register_buffer("input_offset", torch.tensor(0.5))
        # True for export: the bicubic part as convolutions, which trace for any input size
        # (the resize matrices are built for one size). Same output to float rounding.
        self.traceable = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Networks saved before the input was centred lack the offset: they were trained without one.
        state_dict.setdefault(prefix + "input_offset", torch.tensor(0.0))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def receptive_radius(self) -> int:
        """How far (in LR pixels) an output pixel sees; tiles need this much margin, plus bicubic's 2."""
        radius = self.num_layers  # one pixel per 3x3 convolution
        if self.form == "pre_upsample":
            radius = -(-radius // self.scale)
        return radius + 2

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) in [0, 1] -> (B, C, h * scale, w * scale), not clamped."""
        if self.traceable:
            upsampled = upscale_by_convolution(lr, self.scale)
        else:
            upsampled = imresize_torch(lr, self.scale)
        if self.form == "pre_upsample":
            return upsampled + self.body(upsampled - self.input_offset)
        return upsampled + self.shuffle(self.body(lr - self.input_offset))

    def flops_per_lr_pixel(self) -> int:
        """Multiply-adds x 2 of the convolutions per LR pixel (bicubic and ReLUs not counted)."""
        total = 0
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                total += 2 * module.in_channels * module.out_channels * 9
        return total * (self.scale**2 if self.form == "pre_upsample" else 1)


@torch.no_grad()
def relu_activity(model: VDSR, lr: torch.Tensor) -> list[float]:
    """The fraction of positive outputs of each ReLU layer of ``model`` on the batch ``lr``.

    A layer near 0 is dead: no gradient passes it, and it does not come back.
    Runs in eval mode, so batch-norm statistics are left as they were.
    """
    was_training = model.training
    model.eval()
    fractions: list[torch.Tensor] = []
    hooks = [
        module.register_forward_hook(lambda module, inputs, output: fractions.append((output > 0).float().mean()))
        for module in model.body
        if isinstance(module, nn.ReLU)
    ]
    try:
        model(lr)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return torch.stack(fractions).tolist()  # one host sync for all layers

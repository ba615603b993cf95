"""MATLAB's ``imresize`` (bicubic, antialiased): the resize every SR paper's LR images use.

MATLAB resizes one axis at a time. For each output pixel it weights the input
pixels around ``u = x / scale + 0.5 * (1 - 1 / scale)`` (1-based) with Keys'
cubic kernel (a = -0.5); when shrinking, the kernel is stretched by
``1 / scale`` (the antialiasing), and indices outside the image are mirrored
(``1..n, n..1``, the edge pixel repeated). Weights of each output are
normalised to sum to one.

Here that per-axis operation is a dense ``(out, in)`` matrix with the mirroring
folded in, so resizing is ``rows @ image @ cols.T``: the same matrices serve
numpy (data tools) and torch (clean LR made on the training device).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, as MATLAB's ``cubic``."""
    absx = np.abs(x)
    absx2, absx3 = absx**2, absx**3
    inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return inner + outer


def output_length(in_length: int, scale: float) -> int:
    """MATLAB's ``ceil(scale * in_length)``, robust to 1/3 not being exact in binary."""
    return int(math.ceil(in_length * scale - 1e-9))


@lru_cache(maxsize=64)
def resize_matrix(in_length: int, out_length: int, scale: float, antialiasing: bool = True) -> np.ndarray:
    """The float64 ``(out_length, in_length)`` matrix of one axis of MATLAB's bicubic imresize."""
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        kernel_width /= scale
    out_index = np.arange(1, out_length + 1, dtype=np.float64)
    center = out_index / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(center - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    index = left[:, None] + np.arange(taps)[None, :]  # 1-based input indices, possibly outside
    distance = center[:, None] - index
    weights = scale * cubic(scale * distance) if (scale < 1 and antialiasing) else cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    return mirrored_matrix(index.astype(np.int64) - 1, weights, in_length)


def mirrored_matrix(index: np.ndarray, weights: np.ndarray, in_length: int) -> np.ndarray:
    """The read-only float64 ``(out, in_length)`` matrix with ``weights[i, k]`` at 0-based input ``index[i, k]``.

    Indices outside the image are mirrored as MATLAB pads: 0..n-1, then n-1..0, repeated.
    """
    period = 2 * in_length
    folded = np.mod(index, period)
    folded = np.where(folded < in_length, folded, period - 1 - folded)
    matrix = np.zeros((index.shape[0], in_length), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(index.shape[0]), index.shape[1]), folded.ravel()), weights.ravel())
    matrix.flags.writeable = False
    return matrix


def imresize(image: np.ndarray, scale: float, out_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) float image by ``scale`` exactly as MATLAB's ``imresize``.

    Args:
        image: float array; integer images are converted to float64 first
            (values keep their range, so round yourself when writing 8-bit).
        scale: e.g. 1/4 to shrink by 4 (antialiased) or 4 to enlarge.
        out_hw: output size; default MATLAB's ``ceil(scale * size)``.

    Returns:
        float32 for float32 input, float64 otherwise.
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    height, width = image.shape[:2]
    out_height, out_width = out_hw or (output_length(height, scale), output_length(width, scale))
    rows = resize_matrix(height, out_height, float(scale))
    cols = resize_matrix(width, out_width, float(scale))
    work = image.astype(np.float64)
    if work.ndim == 2:
        result = rows @ work @ cols.T
    else:
        result = np.einsum("oh,hwc,pw->opc", rows, work, cols, optimize=True)
    return result.astype(np.float32) if image.dtype == np.float32 else result


def downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Shrink by an integer factor; the image should be a multiple of it (see ``mod_crop``)."""
    return imresize(image, 1.0 / factor)


def mod_crop(image: np.ndarray, factor: int) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of ``factor`` (the SR convention)."""
    height, width = image.shape[:2]
    return image[: height - height % factor, : width - width % factor]


_device_cache: dict[tuple, torch.Tensor] = {}


def device_matrix(build: Callable[..., np.ndarray], *args, device: torch.device | str, dtype: torch.dtype):
    """``build(*args)`` as a tensor on ``device``, kept: training resizes the same shapes on every batch."""
    key = (build, args, str(device), dtype)
    matrix = _device_cache.get(key)
    if matrix is None:
        matrix = torch.from_numpy(np.array(build(*args))).to(device, dtype)
        if len(_device_cache) > 256:
            _device_cache.clear()
        _device_cache[key] = matrix
    return matrix


def imresize_torch(images: torch.Tensor, scale: float, out_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """MATLAB bicubic resize of a batch ``(B, C, H, W)`` (or ``(C, H, W)``) on its own device.

    Differentiable; float32 or float64 in, same dtype out. Matches ``imresize``.
    """
    if images.ndim not in (3, 4):
        raise ValueError(f"expected (B, C, H, W) or (C, H, W), got shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    out_height, out_width = out_hw or (output_length(height, scale), output_length(width, scale))
    dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
    rows = device_matrix(resize_matrix, height, out_height, float(scale), device=images.device, dtype=dtype)
    cols = device_matrix(resize_matrix, width, out_width, float(scale), device=images.device, dtype=dtype)
    return rows @ images.to(dtype) @ cols.T


def downscale_torch(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Shrink a batch by an integer factor with MATLAB's antialiased bicubic."""
    return imresize_torch(images, 1.0 / factor)


def clean_lr_from_hr(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB-bicubic downscaling of an HR batch rounded to 8 bits: the clean LR a data set would store."""
    return torch.round(downscale_torch(hr, scale).clamp(0, 1) * 255) / 255


def upscale_taps(scale: int) -> np.ndarray:
    """(scale, 5) weights of ``imresize``'s integer upscaling: output phase ``p`` of input pixel ``i``.

    Upscaling by an integer never stretches the kernel, so every output pixel
    ``scale * i + p`` weights inputs ``i - 2 .. i + 2`` the same way, whatever
    ``i``: the resize is a convolution per phase.
    """
    offsets = (np.arange(scale) + 0.5) / scale - 0.5  # where each phase falls between input pixels
    taps = cubic(offsets[:, None] - np.arange(-2, 3)[None, :])
    return taps / taps.sum(axis=1, keepdims=True)


def _upscale_last_axis(images: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """``imresize`` by an integer along the last axis of (N, 1, H, W), as a convolution and an interleave."""
    # MATLAB mirrors with the edge pixel repeated: 2 1 | 1 2 ... n | n n-1.
    padded = torch.cat([images[..., 1:2], images[..., :1], images, images[..., -1:], images[..., -2:-1]], dim=-1)
    phases = F.conv2d(padded, taps[:, None, None, :])  # (N, scale, H, W)
    n, scale, height, width = phases.shape
    return phases.permute(0, 2, 3, 1).reshape(n, 1, height, width * scale)


def upscale_by_convolution(images: torch.Tensor, scale: int) -> torch.Tensor:
    """``imresize_torch(images, scale)`` for an integer ``scale``, without size-dependent matrices.

    The same result (to float rounding) from convolutions alone, so it traces for any
    input size (ONNX export with dynamic height and width). Inputs need 2 pixels per side.
    """
    taps = torch.as_tensor(upscale_taps(scale), dtype=images.dtype, device=images.device)
    batch, channels = images.shape[:2]
    planes = images.reshape(-1, 1, *images.shape[2:])
    wide = _upscale_last_axis(planes, taps)
    tall = _upscale_last_axis(wide.transpose(2, 3), taps).transpose(2, 3)
    return tall.reshape(batch, channels, *tall.shape[2:])

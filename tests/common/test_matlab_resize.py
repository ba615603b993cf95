from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import real_photo
from unpaired_sr.common.matlab_resize import (
    cubic,
    downscale,
    imresize,
    imresize_torch,
    mod_crop,
    output_length,
    upscale_by_convolution,
)


def matlab_reference_axis(signal: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB's imresize along axis 0, written the way MATLAB's ``contributions`` reads (1-based, gather)."""
    in_length = signal.shape[0]
    out_length = math.ceil(in_length * scale - 1e-9)
    kernel_width = 4.0 / scale if scale < 1 else 4.0
    taps = math.ceil(kernel_width) + 2
    mirror = list(range(1, in_length + 1)) + list(range(in_length, 0, -1))
    out = np.zeros((out_length,) + signal.shape[1:])
    for x in range(1, out_length + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - kernel_width / 2)
        index = [left + k for k in range(taps)]
        if scale < 1:
            weights = [scale * cubic(np.array(scale * (u - i))) for i in index]
        else:
            weights = [cubic(np.array(u - i)) for i in index]
        total = sum(weights)
        for i, w in zip(index, weights):
            out[x - 1] += (w / total) * signal[mirror[(i - 1) % len(mirror)] - 1]
    return out


def matlab_reference(image: np.ndarray, scale: float) -> np.ndarray:
    rows = matlab_reference_axis(image.astype(np.float64), scale)
    return matlab_reference_axis(rows.swapaxes(0, 1), scale).swapaxes(0, 1)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_matches_matlab_reference_on_real_photos(name, scale):
    photo = mod_crop(real_photo(name)[100:160, 200:272], scale)  # a 60 x 72 crop, borders included
    ours = downscale(photo, scale)
    assert ours.dtype == np.float32 and ours.shape == (60 // scale, 72 // scale, 3)
    assert np.abs(ours - matlab_reference(photo, 1 / scale)).max() < 1e-4


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscaling_matches_matlab_reference(scale):
    photo = real_photo("chelsea")[50:70, 60:84]
    ours = imresize(photo, scale)
    assert ours.shape == (20 * scale, 24 * scale, 3)
    assert np.abs(ours - matlab_reference(photo, scale)).max() < 1e-4


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_interior_matches_pillow_float_bicubic(scale):
    # Pillow uses the same kernel (a = -0.5), centres and antialiasing but clamps at
    # the border instead of mirroring: away from the border the two must agree.
    gray = mod_crop(real_photo("rocket")[:, :, 1], scale)
    ours = downscale(gray, scale)
    pillow = np.asarray(Image.fromarray(gray, mode="F").resize(ours.shape[::-1], Image.BICUBIC))
    margin = 3
    assert np.abs(ours - pillow)[margin:-margin, margin:-margin].max() < 1e-5


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_linear_ramp_interior_is_exact_and_borders_mirror(scale):
    width = 24 * scale
    ramp = np.tile(np.arange(width, dtype=np.float64), (8, 1))
    out = imresize(ramp, 1 / scale)
    # Output pixel x (0-based) sits at input coordinate (x + 0.5) * scale - 0.5.
    centres = (np.arange(width // scale) + 0.5) * scale - 0.5
    np.testing.assert_allclose(out[:, 3:-3], np.broadcast_to(centres[3:-3], out[:, 3:-3].shape), atol=1e-9)
    # At the border the ramp folds back (mirroring), so the first pixel is not on the line.
    assert abs(out[0, 0] - centres[0]) > 0.05
    np.testing.assert_allclose(out[0, 0], matlab_reference(ramp, 1 / scale)[0, 0], atol=1e-12)
    # A constant image stays constant, borders included.
    np.testing.assert_allclose(imresize(np.full((30, 30), 0.3), 1 / scale), 0.3, atol=1e-12)


def test_mirror_border_hand_value():
    # 1-D signal [0, 0, 0, 0, 0, 0, 0, 1] shrunk by 2: the last output pixel mixes the
    # final 1 with its mirror image (index 9 -> 8), so it sees the 1 twice.
    signal = np.zeros((8, 1))
    signal[7] = 1.0
    out = matlab_reference_axis(signal, 0.5)
    u = 4 / 0.5 + 0.5 * (1 - 2)  # MATLAB's centre of output pixel 4: 7.5
    weights = {i: 0.5 * cubic(np.array(0.5 * (u - i))) for i in range(math.floor(u - 4), math.floor(u - 4) + 10)}
    expected = (weights[8] + weights[9]) / sum(weights.values())
    np.testing.assert_allclose(out[3, 0], expected, atol=1e-12)
    np.testing.assert_allclose(imresize(signal[:, 0][None, :], 0.5)[0, 3], expected, atol=1e-12)


def test_torch_matches_numpy_and_is_differentiable():
    photo = real_photo("astronaut", 48)
    batch = torch.from_numpy(photo.transpose(2, 0, 1))[None].repeat(2, 1, 1, 1).requires_grad_()
    out = imresize_torch(batch, 1 / 4)
    np.testing.assert_allclose(out[1].detach().numpy().transpose(1, 2, 0), downscale(photo, 4), atol=1e-6)
    out.sum().backward()
    assert batch.grad is not None and torch.isfinite(batch.grad).all()


def test_output_length_is_matlab_ceil():
    assert output_length(48, 1 / 3) == 16
    assert output_length(50, 1 / 3) == 17
    assert output_length(10, 4) == 40


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(2, 2), (5, 7), (16, 9)])
def test_upscaling_by_convolution_is_the_matrix_resize(scale, size):
    images = torch.rand(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(scale))
    expected = imresize_torch(images, scale)
    torch.testing.assert_close(upscale_by_convolution(images, scale), expected, rtol=0, atol=1e-12)

"""A veil of stray light over the real images (haze, lens flare, a misted window), read off both sets' darkest pixels.

Light scattered into the lens from elsewhere adds to every pixel:
``real = scene * (1 - veil) + light * veil``. Contrast drops and, above
all, nothing is black any more. Unpaired, the black end is the one place
that can be read: almost every photo of any scene holds a few pixels that
are dark in at least one colour (shadows, dark objects, saturated
colours); He, Sun and Tang's dark channel prior (CVPR 2009) rests on it.
So the veil is read from the *dark channel*, each pixel's least colour
channel, eroded over a 3x3 window: the 1st percentile of it over a whole
set is near black for clean photos (0-4 levels on every benchmark split
here) and is lifted by the veil. The estimate is the share ``veil`` that
lifts the clean set's level to the real set's:
``real_level = veil + (1 - veil) * clean_level``.

What cannot be read unpaired is left as simple as it can be: the light is
taken as white (the white end is clipped highlights in every set and does
not move), and the veil as the same over the frame. Noise pulls a set's
darkest pixels down, so a noisy veil reads low; a real set whose scenes hold
no dark pixel at all (a fog bank, snow, only pale colours) would read as
veiled, which is why the veil is applied only when it is clear (``CLEAR_VEIL``).

Samples veil the clean image before everything else (``DegradationFlow.
prepare_clean``), and the estimates that follow (blur, noise, sharpening,
compression) read the real images against the clean ones veiled, as samples
start from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

DARK_WINDOW = 3  # LR px: the dark channel's erosion
DARK_PERCENTILE = 1.0  # of a set's dark-channel pixels: its black level
# The least veil applied (a share of white): unveiled sets read at most 0.012 on 66 benchmark splits, haze (a
# veil of 10-30% of a bluish-grey light of 0.75-0.9) 0.036-0.090 on its three (README: fidelity, forty-sixth round).
CLEAR_VEIL = 0.03


def dark_channel(image: np.ndarray) -> np.ndarray:
    """(H, W) float32: each pixel's least colour channel, the least over a ``DARK_WINDOW`` square around it."""
    least = np.ascontiguousarray(image.min(axis=2), dtype=np.float32)
    return cv2.erode(least, np.ones((DARK_WINDOW, DARK_WINDOW), np.uint8), borderType=cv2.BORDER_REFLECT_101)


def black_level(images: list[np.ndarray]) -> float:
    """The ``DARK_PERCENTILE`` percentile of the dark channel over all of ``images`` (H, W, 3 in [0, 1])."""
    if not images:
        raise ValueError("no images to read a black level from")
    return float(np.percentile(np.concatenate([dark_channel(image).ravel() for image in images]), DARK_PERCENTILE))


def apply_veil(images, veil: float):
    """``images`` (numpy or torch, values in [0, 1]) under a white veil of share ``veil``."""
    return images * (1 - veil) + veil


@dataclass(frozen=True)
class VeilEstimate:
    veil: float  # the share of white over every pixel, 0 where the real set is no lighter at the black end
    clean_level: float  # each set's black level (``black_level``)
    real_level: float

    @property
    def clear(self) -> bool:
        return self.veil >= CLEAR_VEIL

    def describe(self) -> str:
        return (
            f"image veil {self.veil:.3f} (black level of the darkest {DARK_PERCENTILE:g}% of the dark channel: "
            f"real {255 * self.real_level:.1f}, clean {255 * self.clean_level:.1f} levels)"
        )


def estimate_veil(clean_lr: list[np.ndarray], real_lr: list[np.ndarray]) -> VeilEstimate:
    """The white veil that lifts ``clean_lr``'s black level to ``real_lr``'s (lists of H, W, 3 in [0, 1])."""
    clean_level, real_level = black_level(clean_lr), black_level(real_lr)
    veil = max(0.0, (real_level - clean_level) / max(1.0 - clean_level, 1e-6))
    return VeilEstimate(veil=veil, clean_level=clean_level, real_level=real_level)


class ImageVeil(nn.Module):
    """The estimated veil (``estimate_veil``) over clean images; the identity until one is loaded."""

    def __init__(self):
        super().__init__()
        self.register_buffer("veil_share", torch.zeros(()))
        self.veil = 0.0  # kept on the host too: read on every call
        self.register_load_state_dict_post_hook(ImageVeil._note_estimate)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Flows saved before the veil estimate have none: they keep degrading as they were trained.
        state_dict.setdefault(prefix + "veil_share", torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _note_estimate(module: ImageVeil, incompatible_keys) -> None:
        module.veil = float(module.veil_share)

    @property
    def is_identity(self) -> bool:
        return self.veil == 0

    def load_estimate(self, veil: float) -> None:
        self.veil_share.fill_(veil)
        self.veil = float(veil)

    def forward(self, clean_lr: torch.Tensor) -> torch.Tensor:
        return clean_lr if self.veil == 0 else apply_veil(clean_lr, self.veil)

